"""Deltas without a lab: what the controller makes of a host's answer to the
listings, and what a delta holds."""

import base64
import hashlib
import tarfile

import pytest

from fruixops.store import archive
from fruixops.remote import hostreply
from fruixops.rollout import push
from fruixops.store.local import Item, LocalStore, StorePath


@pytest.fixture
def item(tmp_path):
    """A store with one item: two files with one content (0444), the same
    content executable, an empty file, a symlink, a directory."""
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    for name, data, mode in (("a", b"same\n", 0o444), ("b", b"same\n", 0o444),
                             ("bin/x", b"same\n", 0o555), ("empty", b"", 0o444),
                             ("other", b"other\n", 0o444)):
        (tree / name).write_bytes(data)
        (tree / name).chmod(mode)
    (tree / "link").symlink_to("a")
    store = LocalStore(tmp_path / "store")
    store.items_dir.mkdir(parents=True)
    path = StorePath.make("e" * 64, "thing")
    with open(store.archive(path), "wb") as f:
        sha, size = archive.write_tree(f, tree)
    return store, Item(path, sha, size, ())


SAME = hashlib.sha256(b"same\n").hexdigest()
OTHER = hashlib.sha256(b"other\n").hexdigest()


def test_the_listing_records_modes(item):
    store, it = item
    files = archive.listed_files(store.listing(it.path))
    assert files["./a"] == ("f", SAME) and files["./bin/x"] == ("x", SAME)


def test_a_delta_holds_each_needed_content_once_and_the_skeleton(item):
    store, it = item
    f, size = store.delta(it.path, frozenset({("f", SAME)}), compress=False)
    with tarfile.open(f) as tar:
        members = {m.name.removeprefix("./"): m for m in tar}
    files = sorted(n for n, m in members.items() if m.isreg())
    # "a" (first with that content and mode), the empty file; not "b" (the host
    # links it from "a"), not bin/x (same bytes, another mode: the host has it),
    # not "other" (the host has it).
    assert files == ["a", "empty"]
    assert members["link"].issym() and members["bin"].isdir()
    assert size == f.stat().st_size
    again, _ = store.delta(it.path, frozenset({("f", SAME)}), compress=False)
    assert again == f                           # kept: made once per (item, need)


def test_the_hosts_answer_is_read_strictly(item):
    store, it = item
    base = it.path.base
    sends = push.parse_need("h", f"delta {base}\nneed x {SAME}\n", [it], store)
    d = sends[str(it.path)]
    assert d.need == {("x", SAME)}
    # reused: a, b (f SAME) and other; never the empty file
    assert d.reused_files == 3 and d.reused_bytes == len(b"same\n") * 2 + len(b"other\n")
    assert push.parse_need("h", f"whole {base}\n", [it], store)[str(it.path)].need is None
    for bad in (f"whole {base}\nwhole {base}\n",             # answered twice
                "whole " + "f" * 64 + "-elsewhere\n",        # not an item sent
                "",                                          # not answered
                f"need f {SAME}\n",                          # a need before any delta
                f"delta {base}\nneed f {'0' * 64}\n",        # a content not in the item
                f"delta {base}\nneed z {SAME}\n",            # no such kind
                f"delta {base}\nneed f {SAME[:-1]}\n"):      # not a sha256
        with pytest.raises(hostreply.MalformedReply):
            push.parse_need("h", bad, [it], store)


def test_predicted_bytes_include_the_listings_and_the_deltas(item):
    store, it = item
    data, sig = b"fruixops-manifest 3\n...end\n", b"s" * 64

    class M:
        items = (it,)
    whole = push.bundle_bytes(M, data, sig, [str(it.path)], store)
    opening = len(data) + len(b"sig ") + len(base64.b64encode(sig)) + 1
    # Small: no listing sent; the item's channel opens with the receive's token.
    assert whole == opening + len(push.COMMIT) + push.TOKEN_LINE + it.size
    # A delta is sent only when smaller than the whole item (here, with its
    # headers, it is not: then the whole item goes).
    sends = {str(it.path): push.Send(it, frozenset({("f", OTHER)}))}
    f, size = store.delta(it.path, frozenset({("f", OTHER)}), compress=False)
    assert size >= it.size
    assert push.bundle_bytes(M, data, sig, [str(it.path)], store, sends=sends) == whole
    assert sends[str(it.path)].need is None


def test_deleting_an_item_deletes_its_deltas(item):
    store, it = item
    f, _ = store.delta(it.path, frozenset({("f", SAME)}), compress=True)
    assert f.exists() and f.name.startswith(it.path.base)
    store.delete(it.path)
    assert not list(store.deltas_dir.iterdir())


def test_the_hosts_of_a_fleet_run_get_one_delta_made_once(item):
    """Threads asking for the same delta at once (a fleet upgrade): each gets
    it whole; it is made once. (The temporary file was shared by every
    thread of the process, and all but one failed.)"""
    import threading
    store, it = item
    made = []
    real = archive.write_delta

    def counting(*a, **kw):
        made.append(1)
        return real(*a, **kw)
    archive.write_delta = counting
    try:
        out, errors = [], []

        def ask():
            try:
                out.append(store.delta(it.path, frozenset({("f", OTHER)}), compress=True))
            except Exception as exc:           # noqa: BLE001 -- what the test looks for
                errors.append(exc)
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        archive.write_delta = real
    assert errors == [] and len(out) == 8 and len(set(out)) == 1 and made == [1]
    assert not [p for p in store.deltas_dir.iterdir() if p.name.startswith(".")]
