"""Push: get a closure onto a host.

One round trip asks the host (which verifies the signed manifest itself)
which items it lacks; one stream then sends a bundle of the manifest, its
signature and only those items over an SSH channel. The receiver lands them
and records the new generation (current, or the one-shot next boot for a
trial) before it answers.
"""

from . import bundle, hoststate, receiver
from .bootstrap import bootstrap
from .errors import HostError
from .events import Events


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


def bundle_bytes(manifest, manifest_bytes, signature, missing):
    """The exact number of bytes push() will send for these missing items."""
    by_path = {str(it.path): it for it in manifest.items}
    return bundle.stream_size(
        [("manifest", manifest_bytes), ("manifest.sig", signature)],
        [(f"items/{by_path[p].path.base}.tar", by_path[p].size) for p in missing])


def push(hc, manifest, manifest_bytes, signature, missing, store, deployer, trial=False,
         events=None):
    """Send the missing items; return (generation number, items landed)."""
    events = events or Events()
    by_path = {str(it.path): it for it in manifest.items}
    items = [by_path[p] for p in missing]
    members = [bundle.member("manifest", manifest_bytes),
               bundle.member("manifest.sig", signature)]
    for it in items:
        members.append(bundle.file_member(f"items/{it.path.base}.tar",
                                          store.archive(it.path), it.size))
    events.start_push(hc.name, len(items), sum(it.size for it in items))
    args = ["receive", "--deployer", deployer] + (["--trial"] if trial else [])
    result = hc.run(receiver.command(*args), stdin=bundle.stream(members),
                    progress=lambda n: events.sent(hc.name, n))
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    fields = dict(line.split(" ", 1) for line in result.out.splitlines() if " " in line)
    return int(fields["generation"]), int(fields.get("landed", 0))
