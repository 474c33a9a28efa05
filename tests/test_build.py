"""Declared bases build to reproducible, input-addressed closures (the Fruix
phase 15.2 coexistence property, at store level)."""

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from conftest import inv_cmd
from fruixops.system.build import Builder
from fruixops.controller import Controller
from fruixops.errors import UserError

PATH_RE = r"^/frx/store/[0-9a-f]{64}-freebsd-native-(kernel|bootloader|runtime)-%s$"


def store_bytes(store_root):
    """{file name: (sha256, mtime_ns)} of everything in the local store."""
    out = {}
    for f in sorted((Path(store_root) / "store").iterdir()):
        out[f.name] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


def test_two_bases_build_to_distinct_coexisting_paths(project):
    default = inv_cmd(project, "build", "--base", "stable-default", check=True).stdout.split()
    canary = inv_cmd(project, "build", "--base", "stable-canary", check=True).stdout.split()
    assert len(default) == len(canary) == 3
    for p, part in zip(default, ("kernel", "bootloader", "runtime")):
        assert re.match(PATH_RE % re.escape("15.0-STABLE"), p) and part in p
    for p, part in zip(canary, ("kernel", "bootloader", "runtime")):
        assert re.match(PATH_RE % re.escape("15.0-STABLE-p1"), p) and part in p
    assert len(set(default + canary)) == 6
    store = project.parent.parent / ".frx" / "store"
    for p in default + canary:   # both sets are in the local store side by side
        assert (store / (p.rsplit("/", 1)[1] + ".tar")).is_file()


def test_rebuild_gives_identical_paths_and_bytes(project):
    first = inv_cmd(project, "build", "--base", "stable-canary", "--host", "web1",
                    check=True).stdout
    before = store_bytes(project.parent.parent / ".frx")
    again = inv_cmd(project, "build", "--base", "stable-canary", "--host", "web1",
                    check=True).stdout
    assert again == first
    assert len(first.split()) == 4 and first.split()[3].endswith("-fruix-system-web1")
    assert store_bytes(project.parent.parent / ".frx") == before
    ctl = Controller(project)
    ctl.build("stable-canary", "web1")
    assert ctl.builder.built == 0          # a cache hit builds nothing


def test_same_declaration_same_bytes_in_a_fresh_store(project, tmp_path):
    """Reproducible: a second, empty store builds byte-identical archives."""
    ctl = Controller(project)
    paths = ctl.build("stable-default", "web2")
    other = Builder(tmp_path / "store2")
    base = ctl.inventory.base("stable-default")
    other.build_system(ctl.inventory.host("web2"), base)
    for p in map(str, paths):
        from fruixops.store.local import StorePath
        sp = StorePath(p)
        assert other.store.get(sp) == ctl.builder.store.get(sp)
        assert (other.store.archive(sp).read_bytes() == ctl.builder.store.archive(sp).read_bytes())


def _tree_inventory(tmp_path, tree):
    text = f"""
fruixops: {{store: store}}
bases:
  b:
    version_label: 15.0-STABLE
    release: 15.0-STABLE
    branch: stable/15
    source: {{tree: {{path: {tree}}}}}
all:
  hosts:
    h1: {{base: b}}
"""
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    return path


def _make_tree(root):
    for rel, data in {"boot/kernel/kernel": b"K" * 1000, "boot/loader": b"L" * 300,
                      "bin/sh": b"S" * 200, "etc/rc": b"#!/bin/sh\n"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_one_byte_of_source_changes_the_paths_tree(tmp_path):
    tree = tmp_path / "stage"
    _make_tree(tree)
    inv = _tree_inventory(tmp_path, tree)
    before = Controller(inv).build("b")
    with open(tree / "bin/sh", "r+b") as f:   # one byte, same size
        f.seek(7)
        f.write(b"X")
    after = Controller(inv).build("b")
    assert before[2] != after[2]             # runtime holds bin/sh
    assert all(a != b for a, b in zip(before, after))   # the source hash is an input of all


def test_one_byte_of_a_dist_set_changes_the_paths(project, tmp_path):
    ctl = Controller(project)
    base = ctl.inventory.base("stable-default")
    ctl.build("stable-default")
    dist = Path(base.source.base_txz.location)
    copy = tmp_path / "dist"
    shutil.copytree(dist.parent, copy)
    data = bytearray((copy / "base.txz").read_bytes())
    data[-100] ^= 0x01
    (copy / "base.txz").write_bytes(bytes(data))
    text = project.read_text().replace("../.frx/dist/lab/base.txz", str(copy / "base.txz"))
    text = text.replace(base.source.base_txz.sha256, hashlib.sha256(data).hexdigest())
    inv2 = project.with_name("changed.yaml")
    inv2.write_text(text)
    assert Controller(inv2).builder.base_paths(Controller(inv2).inventory.base("stable-default")) \
        != ctl.builder.base_paths(base)


def test_wrong_source_hash_is_one_line_error_with_location(project):
    text = project.read_text()
    bad = re.sub(r"(kernel: \{path: [^,]+,\s+sha256: )([0-9a-f])",
                 lambda m: m.group(1) + ("0" if m.group(2) != "0" else "1"), text, count=1)
    assert bad != text
    inv2 = project.with_name("wrong-hash.yaml")
    inv2.write_text(bad)
    Controller(project).build("stable-default")    # the dist sets exist
    proc = inv_cmd(inv2, "build", "--base", "stable-default")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "wrong sha256" in lines[0]
    assert re.search(r"wrong-hash\.yaml:\d+:\d+: ", lines[0])
    assert "Traceback" not in proc.stderr


def test_missing_source_is_an_error(tmp_path):
    inv = _tree_inventory(tmp_path, tmp_path / "nowhere")
    with pytest.raises(UserError, match="missing source tree"):
        Controller(inv).build("b")


def test_system_item_refers_to_its_base_items(project):
    ctl = Controller(project)
    paths = ctl.build("stable-canary", "db1")
    closure = ctl.builder.store.closure(paths[3])
    assert [str(i.path) for i in closure][-1] == str(paths[3])
    assert sorted(str(r) for r in closure[-1].references) == sorted(map(str, paths[:3]))
    import tarfile
    with tarfile.open(ctl.builder.store.archive(paths[3])) as tar:
        names = tar.getnames()
        meta = tar.extractfile("./metadata").read().decode()
    for want in ("./kernel", "./boot/kernel", "./etc/rc.conf", "./etc/shepherd/config.scm",
                 "./metadata", "./activate"):
        assert want in names
    assert "version_label=15.0-STABLE-p1" in meta and "base=stable-canary" in meta
    assert f"kernel={paths[0]}" in meta


def test_archives_are_canonical(project):
    import tarfile
    ctl = Controller(project)
    paths = ctl.build("stable-default")
    with tarfile.open(ctl.builder.store.archive(paths[2])) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {m.mtime for m in members} == {1}
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert all(m.mode in (0o444, 0o555, 0o777) for m in members)


def test_unknown_base_and_host_are_user_errors(project):
    for args in (["build", "--base", "nope"], ["build", "--host", "nohost"]):
        proc = inv_cmd(project, *args)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "unknown" in proc.stderr


def test_store_keeps_what_transfers_need_and_remakes_it_the_same(project, tmp_path):
    """Build time makes each item's listing and zstd archive once; a store
    missing them (built before, or half-written) makes the same again, and
    deleting an item takes them too."""
    import zstandard
    ctl = Controller(project)
    builder = Builder(tmp_path / "store")            # its own: an item is deleted below
    top = builder.build_system(ctl.inventory.host("web2"), ctl.inventory.base("stable-default"))
    store = builder.store
    items = store.closure(top.path)
    first = {}
    for it in items:
        info = store.transfer_info(it.path)
        zst = store.compressed(it.path).read_bytes()
        assert info["zstd"] == hashlib.sha256(zst).hexdigest() and info["zstd_size"] == len(zst)
        assert zstandard.ZstdDecompressor().decompressobj().decompress(zst) == \
            store.archive(it.path).read_bytes()
        assert info["listing"] == hashlib.sha256(store.listing(it.path)).hexdigest()
        first[it.path] = info
    assert sorted(store.paths()) == sorted(it.path for it in items)      # each item once
    victim = items[0].path
    store.compressed(victim).unlink()
    store.items_dir.joinpath(f"{victim.base}.sums").unlink()
    assert store.transfer_info(victim) == first[victim]
    store.delete(victim)
    assert not [f for f in store.items_dir.iterdir() if f.name.startswith(victim.base)]
