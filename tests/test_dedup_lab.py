"""File-level deduplication on the lab: a host never receives a file its store
already holds; it links it into the new item, and what lands still matches
the item's signed listing, file by file."""

import os

import pytest

from conftest import inv_cmd
from fruixops.rollout import deploy, lifecycle
from fruixops.store import local as store_mod
from fruixops.remote.connection import HostConnection


def _disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def _files(root):
    """{relative path: (inode, mode)} of the regular files under *root*."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            st = os.lstat(full)
            if not os.path.islink(full):
                out[os.path.relpath(full, root)] = (st.st_ino, st.st_mode & 0o7777)
    return out


def _verify(ctl, host):
    hc = HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()
    try:
        return hc.run("sh /var/lib/fruix/fruixops/receiver verify")
    finally:
        hc.close()


@pytest.fixture(scope="module")
def upgraded(lab, project):
    """web2 deployed with stable-default, then upgraded to stable-canary (the
    same source, another version label): the plan's prediction and both
    results."""
    from fruixops.inventory import model as inventory
    from fruixops.controller import Controller
    inv = inventory.load(project)
    lab.reset([inv.host("web2")])
    lab.up([inv.host("web2")])
    ctl = Controller(project)
    first = deploy.deploy(ctl, "web2", "stable-default")
    plan = lifecycle.plan(ctl, "web2", "stable-canary")
    second = deploy.deploy(ctl, "web2", "stable-canary")
    return ctl, first, plan, second


def test_same_source_upgrade_sends_only_what_changed(upgraded):
    ctl, first, plan, second = upgraded
    assert first.deltas == 0 and first.items_sent == 4
    # Every item of the canary is new (its hash changed), but the host holds
    # nearly every file: each goes as a delta, but the system item (20 KiB:
    # its listing would cost about what a delta saves).
    assert second.items_sent == 4 and second.deltas == 3
    assert second.reused_files > 0 and second.reused_bytes > 0
    assert second.bytes_sent <= 0.02 * first.bytes_sent, (second.bytes_sent, first.bytes_sent)
    # The plan said exactly what would cross the wire.
    assert plan.bytes_to_send == second.bytes_sent
    assert plan.reused_files == second.reused_files and len(plan.deltas) == 3


def test_reused_files_are_hard_links_that_stay_read_only(upgraded):
    ctl, first, _, second = upgraded
    disk = _disk(ctl, "web2")
    old = [p for p in first.sent if "runtime" in p][0]
    new = [p for p in second.sent if "runtime" in p][0]
    a, b = _files(disk / old.lstrip("/")), _files(disk / new.lstrip("/"))
    shared = [p for p in a if p in b and a[p][0] == b[p][0]]
    assert len(shared) >= 0.9 * len(b)
    assert all(mode in (0o444, 0o555) for _, mode in b.values())
    assert _verify(ctl, "web2").status == 0


def test_shared_files_survive_the_gc_of_one_item(upgraded, project):
    ctl, first, _, second = upgraded
    disk = _disk(ctl, "web2")
    new = [p for p in second.sent if "runtime" in p][0]
    before = _files(disk / new.lstrip("/"))
    # A third generation: then gc may delete the first (stable-default's
    # items), whose files the canary's items share.
    third = deploy.deploy(ctl, "web2", "broken-canary")
    assert third.deltas == 3
    inv_cmd(project, "gc", "--host", "web2", "--keep", "1", check=True)
    for p in first.sent:
        assert not (disk / p.lstrip("/")).exists()
    assert _files(disk / new.lstrip("/")) == before
    out = _verify(ctl, "web2")
    assert out.status == 0, out.out


def test_a_tampered_shared_file_is_caught_by_verify(lab, project, fresh):
    ctl = fresh("web3")
    first = deploy.deploy(ctl, "web3", "stable-default")
    second = deploy.deploy(ctl, "web3", "stable-canary")
    assert second.deltas == 3
    disk = _disk(ctl, "web3")
    old = disk / [p for p in first.sent if "runtime" in p][0].lstrip("/")
    new = disk / [p for p in second.sent if "runtime" in p][0].lstrip("/")
    a, b = _files(old), _files(new)
    victim = next(p for p in sorted(b) if p in a and a[p][0] == b[p][0])
    target = new / victim
    os.chmod(target, 0o644)
    with open(target, "ab") as f:
        f.write(b"tampered")
    os.chmod(target, b[victim][1])
    out = _verify(ctl, "web3")
    assert out.status == 2
    drifted = [line for line in out.out.splitlines() if line.startswith("drift ")]
    # One inode, two items: both report it.
    assert any(str(old).endswith(line.split()[1].lstrip("/")) for line in drifted)
    assert any(str(new).endswith(line.split()[1].lstrip("/")) for line in drifted)


def _hostile_delta(monkeypatch, extra):
    """The controller's deltas, with *extra* tar members appended (what a
    compromised controller, or anyone holding a receive's token, could send:
    a delta is not signed)."""
    import io
    import tarfile
    real_delta = store_mod.LocalStore.delta

    def tampered(self, path, need, compress):
        f, _ = real_delta(self, path, need, False)
        out = io.BytesIO()
        with tarfile.open(f) as src, tarfile.open(fileobj=out, mode="w",
                                                  format=tarfile.PAX_FORMAT) as dst:
            for m in src:
                if m.name not in {e.name for e in extra}:
                    dst.addfile(m, src.extractfile(m) if m.isreg() else None)
            for e in extra:
                dst.addfile(e, io.BytesIO(b"rogue\n") if e.isreg() else None)
        bad = f.with_suffix(".bad")
        bad.write_bytes(out.getvalue())
        if compress:
            import zstandard
            bad.write_bytes(zstandard.ZstdCompressor().compress(out.getvalue()))
        return bad, bad.stat().st_size

    monkeypatch.setattr(store_mod.LocalStore, "delta", tampered)


def test_a_delta_that_does_not_match_the_listing_is_refused(lab, project, fresh, monkeypatch):
    """A delta planting a file its signed listing lacks is refused before
    anything is linked into it; the host forgets it and takes the whole
    item, which hashes to the manifest."""
    import tarfile
    ctl = fresh("db2")
    deploy.deploy(ctl, "db2", "stable-default")
    disk = _disk(ctl, "db2")
    planted = tarfile.TarInfo("./planted")
    planted.size, planted.mode = 6, 0o444
    _hostile_delta(monkeypatch, [planted])
    r = deploy.deploy(ctl, "db2", "stable-canary")
    refused = [n for n in r.notes if "its delta refused" in n]
    assert len(refused) == 3 and all("f - ./planted" in n for n in refused), r.notes
    assert not list((disk / "frx/store").glob("*/planted"))
    assert _verify(ctl, "db2").status == 0
