"""The lab's hardware for one host: boot it, boot it again after a reboot,
power-cycle it on SIGUSR1, switch it off on SIGTERM.

    python -m fruixops.lab.supervisor HOSTDIR TAR [FRX_TMPFS_MB] [NEXTBOOT] [NETNS]

NETNS: the host's network namespace (lab_link), named as `ip netns` names it.
"""

import os
import signal
import subprocess
import sys
import time

from fruixops.lab import BOOT


def main(hostdir, tar_kind, frx_mb="", nextboot="", netns=""):
    events = []
    signal.signal(signal.SIGTERM, lambda *_: events.append("off"))
    signal.signal(signal.SIGUSR1, lambda *_: events.append("cycle"))
    while "off" not in events:
        events.clear()
        log(f"power on ({tar_kind} tar)")
        # --uts: the host sets its own hostname (rc.d/hostname), never the
        # machine's. --kill-child: if this process dies, the host's PID 1 gets SIGKILL and
        # with it every process of the host.
        enter = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
        proc = subprocess.Popen(enter + [
            "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
            "--propagation", "private", "--kill-child",
            "sh", str(BOOT), hostdir, tar_kind, frx_mb, nextboot], stdin=subprocess.DEVNULL)
        while proc.poll() is None and not events:
            _sleep_until_signal(proc)
        if events:
            proc.send_signal(signal.SIGKILL)   # power cut: no shutdown
            proc.wait()
            log("power " + ("off" if "off" in events else "cycle"))
            continue
        if not os.path.isdir(hostdir):
            log("the host's directory is gone; switching off")
            return
        if proc.returncode != 0:
            # 3: no kernel could be loaded (boot.sh); anything else: the boot itself
            # failed. Either way the host stays down until power-cycled, as a
            # machine would (and no boot loop burns the CPU).
            log(f"halted (init exited {proc.returncode}); waiting for a power cycle")
            while not events:
                signal.pause()
            continue
        log("reboot")


def _sleep_until_signal(proc):
    try:
        proc.wait(timeout=0.2)
    except subprocess.TimeoutExpired:
        pass


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] supervisor {os.getpid()}: {message}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
