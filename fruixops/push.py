"""Push: get a closure onto a host.

One round trip asks the host (which verifies the signed manifest itself)
which items it lacks; one stream then sends a bundle of the manifest, its
signature and only those items over an SSH channel. The receiver lands them
and records the new generation (current, or the one-shot next boot for a
trial) before it answers.
"""

import sys
import time

from . import bundle, hoststate, receiver
from .bootstrap import bootstrap
from .errors import HostError


class Progress:
    """Bytes and items sent to one host, shown on a terminal."""

    def __init__(self, host, total_bytes, total_items, stream=sys.stderr):
        self.host, self.total, self.items = host, total_bytes, total_items
        self.sent, self.stream = 0, stream
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, n):
        self.sent += n
        now = time.monotonic()
        if self.tty and (now - self.last > 0.1 or self.sent >= self.total):
            self.last = now
            self.stream.write(f"\r{self.host}: sending {self.items} items "
                              f"{self.sent / 2**20:8.1f} / {self.total / 2**20:.1f} MiB")
            self.stream.flush()

    def done(self):
        if self.tty and self.sent:
            self.stream.write("\n")


def plan(hc, manifest_bytes, signature, trusted_keys):
    """Ask the host what it lacks (installing the receiver first when it is
    missing or outdated). Returns a HostState with .missing filled in."""
    sig_bundle = bundle.stream([bundle.member("manifest", manifest_bytes),
                                bundle.member("manifest.sig", signature)])
    payload = b"".join(sig_bundle)
    result = hc.run(receiver.if_current("plan"), stdin=payload)
    if result.out.startswith(receiver.OUTDATED):
        bootstrap(hc, trusted_keys)
        result = hc.run(receiver.if_current("plan"), stdin=payload)
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    return hoststate.parse(result.out)


def push(hc, manifest, manifest_bytes, signature, missing, store, deployer, trial=False):
    """Send the missing items; return (generation number, items landed)."""
    by_path = {str(it.path): it for it in manifest.items}
    items = [by_path[p] for p in missing]
    members = [bundle.member("manifest", manifest_bytes),
               bundle.member("manifest.sig", signature),
               bundle.member("deployer", deployer.encode() + b"\n")]
    for it in items:
        members.append(bundle.file_member(f"items/{it.path.base}.tar",
                                          store.archive(it.path), it.size))
    progress = Progress(hc.name, sum(it.size for it in items), len(items))
    args = ["receive"] + (["--trial"] if trial else [])
    try:
        result = hc.run(receiver.command(*args), stdin=bundle.stream(members), progress=progress)
    finally:
        progress.done()
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    fields = dict(line.split(" ", 1) for line in result.out.splitlines() if " " in line)
    return int(fields["generation"]), int(fields.get("landed", 0))
