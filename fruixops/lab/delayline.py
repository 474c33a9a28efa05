"""The propagation delay of a lab host's shaped link (link.py): two TUN
devices, one on the machine's side and one moved into the host's network
namespace; every packet read from one is written to the other DELAY later,
in order. The rate is the kernel's (TBF on each device); this only waits.

    python -m fruixops.lab.delayline NETNS ROOTDEV HOSTDEV DELAY_MS
"""

import collections
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import time

MTU = 65535
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def _tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def delay_line(netns, rdev, hdev, delay):
    """Hand every packet read from one device to the other *delay* seconds
    later, in order; both devices go when this process ends."""
    a, b = _tun(rdev), _tun(hdev)
    subprocess.run(["ip", "link", "set", hdev, "netns", netns], check=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    peer = {a: b, b: a}
    queue = {a: collections.deque(), b: collections.deque()}   # to write to that fd
    while True:
        now = time.monotonic()
        for fd, q in queue.items():
            while q and q[0][0] <= now:
                try:
                    os.write(fd, q.popleft()[1])
                except OSError:
                    pass            # a full or down device drops it, as a wire would
        due = [q[0][0] for q in queue.values() if q]
        timeout = max(min(due) - time.monotonic(), 0) if due else None
        ready, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            while True:
                try:
                    packet = os.read(fd, MTU + 1)
                except BlockingIOError:
                    break
                queue[peer[fd]].append((now + delay, packet))


if __name__ == "__main__":
    delay_line(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) / 1000)
