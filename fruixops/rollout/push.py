"""Push: get a closure onto a host.

One round trip asks the host (which verifies the signed manifest itself)
which items it lacks. A receive session then sends the manifest and its
signature. When the host's store may already hold some of the new files, the
missing items' listings go next and the host answers, per item, which file
contents it lacks. Each missing item then streams over a channel of its own:
the whole item (its zstd archive, where the host has zstd) or a delta of only
the contents the host lacks. "commit" lets the receiver land them and record
the new generation (the loader's default, or its one-shot next boot for a
trial) before it answers.
"""

import base64
import itertools
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import paramiko

from fruixops.store import archive
from fruixops.rollout import bootloader
from fruixops.remote import bundle, hostreply, hoststate, receiver
from fruixops.rollout.bootstrap import bootstrap, receiver_state
from fruixops.remote.connection import CommandTimeout
from fruixops.errors import HostError, UserError
from fruixops.rollout.events import Events


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
# "token " and the receive's 128-bit token in hex, a line: what every command
# that adds to a receive (listings, item, pull) sends first on its stdin.
TOKEN_LINE = len(b"token \n") + 32
CHUNK = 1 << 20
ITEMS_IN_FLIGHT = 2
# An item this big sent whole gets its file listing sent along (signed through
# the manifest's listing hash): the host, having checked the archive's hash,
# holds the unpacked tree to the listing's shape instead of hashing every file
# a second time. A smaller one is listed on the host, where that costs less
# than sending its listing.
SEND_LISTING_FROM = 1 << 20


# The slowest a host may fetch from a cache, and the time a fetch has besides
# its bytes (the inventory's cache settings min_rate_kib and grace change
# them): the host ends a pull slower than that, and the item is pushed.
PULL_MIN_RATE = 64 << 10
PULL_GRACE = 30

# Below this size an item goes whole even to a host that may hold some of its
# files: its listing would cost about what a delta could save.
DEDUP_FROM = 64 << 10


def listed(items, reuse):
    """The items whose listings go first: when the host may reuse files (it
    answers which contents it lacks), all but the smallest; else the big ones."""
    least = DEDUP_FROM if reuse else SEND_LISTING_FROM
    return [it for it in items if it.size >= least]


def listings_payload(items, store, compress):
    """The listings of *items* as sent to the host (each after "=NAME"),
    zstd-compressed when the host has zstd (always the same bytes)."""
    raw = b"".join(b"=" + it.path.base.encode() + b"\n" + store.listing(it.path) for it in items)
    if not compress:
        return raw
    import zstandard
    return zstandard.ZstdCompressor(level=3).compress(raw)


@dataclass
class Send:
    """What goes to the host for one missing item: the whole item (its
    canonical archive, or its zstd form), or a delta of the file contents the
    host lacks (need: a set of (kind, sha256))."""
    item: object
    need: frozenset | None = None        # None: the whole item
    file: object = None
    size: int = 0
    reused_files: int = 0
    reused_bytes: int = 0

    @property
    def codec(self):
        return None if self.need is None else "delta"


def parse_need(host, text, items, store):
    """The host's answer to the listings of *items* (receiver `need_answer`):
    {store path: Send}. Strict: every item answered once; a delta's needs are
    contents of that item."""
    by_name = {it.path.base: it for it in items}
    answer, current = {}, None
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("whole", "delta"):
            it = by_name.get(rest)
            if it is None or str(it.path) in answer:
                raise hostreply.MalformedReply(host, "listings", line)
            answer[str(it.path)] = current = (it, None if word == "whole" else set())
        elif word == "need" and current and current[1] is not None:
            kind, _, sha = rest.partition(" ")
            if kind not in ("f", "x") or not hostreply.is_sha256(sha):
                raise hostreply.MalformedReply(host, "listings", line)
            current[1].add((kind, sha))
        else:
            raise hostreply.MalformedReply(host, "listings", line)
    if set(answer) != {str(it.path) for it in items}:
        raise hostreply.MalformedReply(host, "listings", "not every item answered")
    sends = {}
    for path, (it, need) in answer.items():
        if need is None:
            sends[path] = Send(it)
            continue
        files = archive.listed_files(store.listing(it.path))
        contents = set(files.values())
        if not need <= contents:
            raise hostreply.MalformedReply(host, "listings", f"needs content not in {it.path}")
        sizes = store.file_sizes(it.path)
        reused = [n for n, key in files.items() if key not in need and key[1] != archive.EMPTY_SHA]
        sends[path] = Send(it, frozenset(need), reused_files=len(reused),
                           reused_bytes=sum(sizes.get(n, 0) for n in reused))
    return sends


def resolve(sends, store, compress):
    """Fill in the file and size each Send streams: a delta that would not be
    smaller than the whole item (made and compressed at build time) is
    replaced by it."""
    for s in sends.values():
        whole = ((store.compressed(s.item.path), store.transfer_info(s.item.path)["zstd_size"])
                 if compress else (store.archive(s.item.path), s.item.size))
        if s.need is not None:
            s.file, s.size = store.delta(s.item.path, s.need, compress)
            if s.size >= whole[1]:
                s.need, s.reused_files, s.reused_bytes = None, 0, 0
        if s.need is None:
            s.file, s.size = whole
    return sends


def whole(items):
    return {str(it.path): Send(it) for it in items}


def missing_items(host, manifest, missing):
    """The manifest's items that the host said it lacks: a host that asks for
    anything else is refused."""
    by_path = {str(it.path): it for it in manifest.items}
    for p in missing:
        if p not in by_path:
            raise hostreply.MalformedReply(host, "plan", f"missing {p} (not in the manifest)")
    return [by_path[p] for p in dict.fromkeys(missing)]


def ask_need(hc, manifest_bytes, signature, items, store):
    """Before a deploy (plan, dry runs): what the host would be asked to send
    of each item, given the files its store holds: {store path: Send}, or
    None when a receive would send them whole without asking (nothing in the
    store to reuse, or a receiver that does not know `need` yet)."""
    items = listed(items, True)          # as a receive would ask
    payload = bundle.small_tar({"manifest": manifest_bytes, "manifest.sig": signature,
                                "listings": listings_payload(items, store, False)})
    command = hc.receiver("need") if hc.access.restricted else receiver.if_current("need")
    result = hc.run(command, stdin=payload)
    if result.out.startswith(receiver.OUTDATED):
        return None
    if result.status != 0:
        raise HostError(hc.name, result.last_error_line())
    first, _, rest = result.out.partition("\n")
    if first != "reuse yes":
        return None
    return parse_need(hc.name, rest, items, store)


def bundle_bytes(manifest, manifest_bytes, signature, missing, store, compress=False, host="?",
                 sends=None, pull=False, pulled=(), listings_pulled=False):
    """The exact number of bytes push() will send for these missing items
    (*sends*: the host's answer to their listings, when it can reuse files;
    *pull*: the host pulls, and succeeds for the store paths in *pulled*,
    and for the listings if *listings_pulled*)."""
    items = missing_items(host, manifest, missing)
    total = len(_opening(manifest_bytes, signature)) + len(COMMIT)
    first = listed(items, sends is not None)
    reuse = sends is not None
    if first and (reuse or not pull) and not listings_pulled:
        total += len(listings_payload(first, store, compress))
    # Every channel that adds to the receive opens with its token line: the
    # listings (pulled, or sent, or both when the pull is refused), each
    # item's pull, each item sent.
    channels = 0
    if first and (reuse or not pull):
        channels += 1 + (1 if reuse and pull and not listings_pulled else 0)
    sends = resolve(dict(whole(items), **(sends or {})), store, compress)
    for p, s in sends.items():
        channels += 1 if p in pulled else (2 if pull and s.need is None else 1)
    return total + channels * TOKEN_LINE + sum(s.size for p, s in sends.items() if p not in pulled)


@dataclass
class Pull:
    """Where a host pulls items from: the cache's URL, how many pulls it runs
    at once, and (when the cache can be uploaded to) the uploader that puts
    the deltas made for it there, so that it pulls those too."""
    url: str
    parallel: int
    uploader: object = None
    grace: int = PULL_GRACE            # s a fetch may take besides its bytes
    min_rate: int = PULL_MIN_RATE      # bytes/s: a fetch slower than this is ended

    def limit(self, s):
        """How long (s) the host lets a pull of Send *s* fetch, in all: the
        grace, and its bytes at min_rate: the most the host accepts (zstd's
        bound on a compressed archive) and the listing that may come first."""
        most = s.item.size + s.item.size // 128 + 131072
        return self.grace + (most + s.item.size + (1 << 20)) // self.min_rate


def push(hc, manifest, manifest_bytes, signature, missing, store, deployer, trial=False,
         events=None, compress=False, report=None, reuse=False, pull=None):
    """Send the missing items; return (generation number, items landed). The
    receiver's closing answer ("generation N", "landed K", for a trial
    "one-shot HOW") goes into the dict *report* when one is given, with
    "sends" (what each item took), "pulled" ({store path: bytes fetched}),
    "listings_fetched" (bytes), "uploaded" (delta bytes this deploy put in
    the cache) and "pull_refused" ({store path, or "listings": why}).

    One receive session holds the host's lock and verifies the manifest; each
    missing item then streams over a channel of its own straight into the
    host's unpacking (hashed on the way), and "commit" lets the receiver check
    and land them all and switch. With *pull* (a Pull), the host fetches
    each item from the cache itself (whole, or a delta uploaded there first),
    and the listings it is asked about, through the same checks; what it
    refuses from there is sent instead."""
    events = events or Events()
    report = {} if report is None else report
    items = missing_items(hc.name, manifest, missing)
    args = ["receive", "--deployer", deployer] + (["--trial"] if trial else [])
    session = hc.session(hc.receiver(*args))
    session.send(_opening(manifest_bytes, signature))
    ready = session.readline()
    if not ready or not ready.startswith("ready "):
        result = session.finish()
        if result.status == 0:
            raise hostreply.MalformedReply(hc.name, "receive", ready or "")
        raise HostError(hc.name, result.last_error_line())
    words = ready.split()
    if len(words) != 3 or not re.fullmatch(r"[0-9a-f]{32}", words[2]):
        session.finish()
        raise hostreply.MalformedReply(hc.name, "receive", ready)
    pid = str(hostreply.number(hc.name, "receive", words[1], ready))
    # Only this receive's controller has its token: the commands that add to
    # the receive show it, on their stdin (never on a command line, which
    # the host's ps shows).
    token = f"token {words[2]}\n".encode()

    def with_token(data):
        if isinstance(data, (bytes, bytearray)):
            return token + data
        return itertools.chain([token], data)

    # Listings first: a host whose store may hold some of the new files says,
    # per item, which contents it lacks, before anything else is sent. (To
    # a host with nothing to reuse they go beside the items, and an item
    # that finishes before its listing is there is listed on the host.)
    sends, first = whole(items), listed(items, reuse)

    def send_listings(these):
        return hc.run(hc.receiver("listings", pid, *(["zstd"] if compress else [])),
                      stdin=with_token(listings_payload(these, store, compress)))
    beside = []
    report.update(pulled={}, pull_refused={}, delta_refused={}, listings_fetched=0, uploaded=0)
    if first and reuse:
        r = None
        if pull:
            r = hc.run(hc.receiver("listings", pid, "pull", pull.url,
                                   *[it.path.base for it in first]), stdin=token)
            if r.status == 0:
                report["listings_fetched"] = sum(store.listing_file(it.path).stat().st_size
                                                 for it in first)
            else:
                report["pull_refused"]["listings"] = r.last_error_line()
                r = None
        r = r or send_listings(first)
        if r.status != 0:
            session.finish()
            raise HostError(hc.name, r.last_error_line())
        sends.update(parse_need(hc.name, r.out, first, store))
    elif first and not pull:
        # (A host that pulls fetches a big item's listing with it.)
        beside = [lambda: send_listings(first)]
    resolve(sends, store, compress)
    report["sends"] = sends
    events.start_push(hc.name, len(items), sum(s.size for s in sends.values()))

    def send_item(s):
        # Whole and compressed: the zstd archive made at build time, whose
        # hash the manifest signs. A delta: checked file by file on the host.
        codec = ".".join(c for c in (s.codec, "zstd" if compress else None) if c)
        args = ["item", pid, s.item.path.base] + ([codec] if codec else [])
        r = hc.run(hc.receiver(*args), stdin=with_token(_chunks(s.file, s.size)),
                   progress=lambda n: events.sent(hc.name, n))
        if r.status != 0 and s.need is not None:
            # A delta the host cannot assemble to the signed listing (a store
            # file of its that changed since it landed): the host forgot it,
            # and takes the whole item, checked by its signed hash, instead.
            report["delta_refused"][str(s.item.path)] = r.last_error_line()
            s.need, s.reused_files, s.reused_bytes = None, 0, 0
            resolve({str(s.item.path): s}, store, compress)
            return send_item(s)
        return r

    counted = threading.Lock()

    def pull_item(s):
        """The host fetches the item (a delta: once uploaded); what it
        refuses is sent."""
        form = "zstd" if compress else "tar"
        # The host ends a fetch slower than the cache settings allow; the
        # controller waits that long and as long again as a command may take.
        within = pull.limit(s)
        args = ["pull", "--within", str(within), pid, s.item.path.base, pull.url]
        if s.need is not None:
            try:
                sha, uploaded = pull.uploader.delta(s.file, compress)
            except (OSError, HostError, UserError, paramiko.SSHException) as exc:
                report["pull_refused"][str(s.item.path)] = f"cannot upload its delta: {exc}"
                return send_item(s)
            with counted:
                report["uploaded"] += uploaded
            args += ["delta.zstd" if compress else "delta", sha]
        else:
            args.append(form)
        try:
            r = hc.run(hc.receiver(*args), stdin=token, timeout=hc.command_timeout + within)
        except CommandTimeout as exc:
            report["pull_refused"][str(s.item.path)] = str(exc)
            return send_item(s)
        words = r.out.split()
        if r.status == 0 and words[:2] == ["pulled", s.item.path.base] and len(words) >= 3:
            size = s.size
            if "listing" in words[3:]:
                size += store.listing_file(s.item.path).stat().st_size
            report["pulled"][str(s.item.path)] = size
            events.sent(hc.name, s.size)
            return r
        report["pull_refused"][str(s.item.path)] = r.last_error_line()
        return send_item(s)

    def take(s):
        if pull and (s.need is None or pull.uploader):
            return pull_item(s)
        return send_item(s)

    # Two items in flight: one streams while the host audits the one before
    # (or as many pulls as the cache settings say).
    in_flight = pull.parallel if pull else ITEMS_IN_FLIGHT
    with ThreadPoolExecutor(max_workers=in_flight + len(beside)) as pool:
        early = [pool.submit(f) for f in beside]
        results = list(pool.map(take, [sends[str(it.path)] for it in items]))
        results = [f.result() for f in early] + results
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
