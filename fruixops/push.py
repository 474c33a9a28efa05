"""Push: get a closure onto a host.

One round trip asks the host (which verifies the signed manifest itself)
which items it lacks. A receive session then sends the manifest and its
signature; each missing item streams over a channel of its own (its zstd
archive, where the host has zstd), big items' file listings over one more,
and "commit" lets the receiver land them and record the new generation
(the loader's default, or its one-shot next boot for a trial) before it
answers.
"""

import base64
from concurrent.futures import ThreadPoolExecutor

from . import bootloader, bundle, hostreply, hoststate, receiver
from .bootstrap import bootstrap, receiver_state
from .errors import HostError
from .events import Events


def plan(hc, manifest_bytes, signature, trusted_keys):
    """Ask the host what it lacks (installing the receiver first when it is
    missing or outdated). Returns a HostState with .missing filled in."""
    payload = bundle.small_tar({"manifest": manifest_bytes, "manifest.sig": signature})
    if hc.access.restricted:
        # No shell to ask "is the receiver current?" in the same breath.
        if receiver_state(hc) != "current":
            bootstrap(hc, trusted_keys)
        result = hc.run(hc.receiver("plan", "--esp", bootloader.esp_path(hc.host)),
                        stdin=payload)
    else:
        command = receiver.if_current(bootloader.plan_command(hc.host))
        result = hc.run(command, stdin=payload)
        if result.out.startswith(receiver.OUTDATED):
            bootstrap(hc, trusted_keys)
            result = hc.run(command, stdin=payload)
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    return hoststate.parse(result.out, hc.name, "plan")


def _opening(manifest_bytes, signature):
    return manifest_bytes + b"sig " + base64.b64encode(signature) + b"\n"


COMMIT = b"commit\n"
CHUNK = 1 << 20
ITEMS_IN_FLIGHT = 2
# An item this big gets its file listing sent along (signed through the
# manifest's listing hash) instead of the host hashing every file of it a
# second time to make one; a smaller one is listed on the host, where that
# costs less than sending it (and is checked against the same hash).
SEND_LISTING_FROM = 1 << 20


def _listed(items):
    return [it for it in items if it.size >= SEND_LISTING_FROM]


def _listings(items, store):
    for it in items:
        yield b"=" + it.path.base.encode() + b"\n" + store.listing(it.path)


def _size(it, store, compress):
    return store.transfer_info(it.path)["zstd_size"] if compress else it.size


def missing_items(host, manifest, missing):
    """The manifest's items that the host said it lacks: a host that asks for
    anything else is refused."""
    by_path = {str(it.path): it for it in manifest.items}
    for p in missing:
        if p not in by_path:
            raise hostreply.MalformedReply(host, "plan", f"missing {p} (not in the manifest)")
    return [by_path[p] for p in dict.fromkeys(missing)]


def bundle_bytes(manifest, manifest_bytes, signature, missing, store, compress=False, host="?"):
    """The exact number of bytes push() will send for these missing items."""
    items = missing_items(host, manifest, missing)
    return (len(_opening(manifest_bytes, signature)) + len(COMMIT)
            + sum(_size(it, store, compress) for it in items)
            + sum(len(chunk) for chunk in _listings(_listed(items), store)))


def push(hc, manifest, manifest_bytes, signature, missing, store, deployer, trial=False,
         events=None, compress=False, report=None):
    """Send the missing items; return (generation number, items landed). The
    receiver's closing answer ("generation N", "landed K", for a trial
    "one-shot HOW") goes into the dict *report* when one is given.

    One receive session holds the host's lock and verifies the manifest; each
    missing item then streams over a channel of its own straight into the
    host's unpacking (hashed on the way), and "commit" lets the receiver check
    and land them all and switch."""
    events = events or Events()
    items = missing_items(hc.name, manifest, missing)
    events.start_push(hc.name, len(items), sum(_size(it, store, compress) for it in items))
    args = ["receive", "--deployer", deployer] + (["--trial"] if trial else [])
    session = hc.session(hc.receiver(*args))
    session.send(_opening(manifest_bytes, signature))
    ready = session.readline()
    if not ready or not ready.startswith("ready "):
        result = session.finish()
        if result.status == 0:
            raise hostreply.MalformedReply(hc.name, "receive", ready or "")
        raise HostError(hc.name, result.last_error_line())
    pid = str(hostreply.number(hc.name, "receive", ready[len("ready "):], ready))

    def send_item(it):
        # Compressed: the zstd archive made at build time, whose hash the
        # manifest signs (nothing is compressed now).
        args = ["item", pid, it.path.base] + (["zstd"] if compress else [])
        src = store.compressed(it.path) if compress else store.archive(it.path)
        return hc.run(hc.receiver(*args), stdin=_chunks(src, _size(it, store, compress)),
                      progress=lambda n: events.sent(hc.name, n))

    # Two items in flight: one streams while the host audits the one before;
    # the listings of big items go first, on a channel of their own.
    with ThreadPoolExecutor(max_workers=ITEMS_IN_FLIGHT) as pool:
        listed = _listed(items)
        first = ([pool.submit(hc.run, hc.receiver("listings", pid),
                              stdin=_listings(listed, store))] if listed else [])
        results = [f.result() for f in first] + list(pool.map(send_item, items))
    failed = [r for r in results if r.status != 0]
    if failed:
        session.finish()          # no commit: the receiver gives up and cleans up
        raise HostError(hc.name, failed[0].last_error_line())
    session.send(COMMIT)
    result = session.finish()
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    fields = hostreply.fields(hc.name, "commit", result.out, ("landed", "generation"),
                              ("one-shot",))
    if report is not None:
        report.update(fields)
    return (hostreply.number(hc.name, "commit", fields["generation"]),
            hostreply.number(hc.name, "commit", fields["landed"]))


def _chunks(path, size):
    sent = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sent += len(chunk)
            yield chunk
    if sent != size:
        raise IOError(f"{path} changed size while being sent ({sent} != {size})")
