"""The generation lifecycle on the lab: plan predicts a deploy exactly, diff
compares generations, gc keeps what it must and frees what it says, and the
local store's gc keeps what the declarations build."""

import json
import os
from pathlib import Path

import pytest

from conftest import host_snapshot, inv_cmd
from faultlab import check_host
from fruixops.rollout import deploy
from fruixops.inventory import model as inventory
from fruixops.rollout import lifecycle, push
from fruixops.controller import Controller

HOST = "web2"


@pytest.fixture
def runtime_project(lab, project):
    """An inventory whose two bases (15.0-STABLE, 15.0-STABLE-p1) build from a
    staging tree the test can change, and web2 wiped and booted bare."""
    stage = project.parent.parent / "stage"
    if stage.exists():
        import shutil
        shutil.rmtree(stage)
    for rel, data in {"boot/kernel/kernel": b"\x7fELF" + b"K" * 300_000, "boot/loader": b"L" * 90_000,
                      "bin/sh": b"S" * 150_000, "etc/rc": b"#!/bin/sh\n",
                      "lib/libc.so.7": b"C" * 400_000}.items():
        p = stage / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    text = project.read_text()
    bases = ("bases:\n"
             "  rt-default:\n    version_label: 15.0-STABLE\n    release: 15.0-STABLE\n"
             f"    branch: stable/15\n    source: {{tree: {{path: {stage}}}}}\n"
             "  rt-canary:\n    version_label: 15.0-STABLE-p1\n    release: 15.0-STABLE\n"
             f"    branch: stable/15\n    source: {{tree: {{path: {stage}}}}}\n")
    path = project.with_name("runtime.yaml")
    path.write_text(text.replace("bases:\n", bases, 1))
    host = inventory.load(path).host(HOST)
    lab.reset([host])
    lab.up([host])
    return path, stage, lab.disk(HOST)


def change_runtime(stage, n):
    (stage / "bin/sh").write_bytes(b"S" * 150_000 + f"version {n}\n".encode())


def test_plan_predicts_exactly_what_deploy_sends(runtime_project):
    path, stage, disk = runtime_project
    ctl = Controller(path)
    for n, base in enumerate(["rt-default", "rt-canary", "rt-default", "rt-default"]):
        if n != 3:
            change_runtime(stage, n)       # the last one redeploys the same closure
        ctl = Controller(path)
        before = host_snapshot(disk)
        change = lifecycle.plan(ctl, HOST, base, compress="none")
        assert host_snapshot(disk) == before                 # plan changes nothing
        r = deploy.deploy(ctl, HOST, base, compress="none")   # bytes exactly as planned
        assert sorted(change.send) == sorted(r.sent)
        assert change.bytes_to_send == r.bytes_sent
        assert len(change.send) == r.items_sent
        assert change.new_closure == r.closure
        assert change.unchanged == (not r.changed)
    # Compressed (the default where the host has zstd): the same items, as
    # many bytes as planned, fewer than uncompressed.
    change_runtime(stage, 50)
    ctl = Controller(path)
    change = lifecycle.plan(ctl, HOST, "rt-canary")
    assert change.compressed
    m, data, sig = ctl.make_manifest(HOST, "rt-canary")
    uncompressed = push.bundle_bytes(m, data, sig, change.send, ctl.builder.store)
    r = deploy.deploy(ctl, HOST, "rt-canary")
    assert r.compressed and sorted(r.sent) == sorted(change.send)
    assert r.bytes_sent == change.bytes_to_send < uncompressed
    # --check through the command line, as JSON, says the same as plan.
    change_runtime(stage, 99)
    proc = inv_cmd(path, "deploy", "--host", HOST, "--base", "rt-canary", "--check", "--json")
    doc = json.loads(proc.stdout)
    assert doc["old_label"] == "15.0-STABLE-p1" and doc["new_label"] == "15.0-STABLE-p1"
    assert doc["reboot_needed"] is True and len(doc["send"]) == 4 and doc["bytes_to_send"] > 0
    assert {a["path"] for a in doc["added"]} >= set(doc["send"])
    assert doc["removed"] and all(r["size"] > 0 for r in doc["removed"])


def inodes(item_dir):
    """{inode: size} of the regular files of an item (items share files by
    hard links: what deleting one frees is the inodes that go with it)."""
    out = {}
    for d, _, fs in os.walk(item_dir):
        for f in fs:
            st = os.lstat(os.path.join(d, f))
            if not os.path.islink(os.path.join(d, f)):
                out[st.st_ino] = st.st_size
    return out


def test_gc_keeps_what_it_must_and_frees_what_it_says(runtime_project):
    path, stage, disk = runtime_project
    bases = ["rt-default", "rt-canary"] * 3
    for n, base in enumerate(bases, start=1):
        change_runtime(stage, n)
        r = deploy.deploy(Controller(path), HOST, base, reboot=(n in (1, 3)))
        assert r.generation == n
    ctl = Controller(path)
    state = deploy.status(ctl, HOST)
    assert (state.current, state.rollback) == (6, 5)
    assert state.booted == state.gen(3).closure            # booted the 3rd, never rebooted since
    store = disk / "frx/store"
    items_before = {p.name: inodes(p) for p in store.iterdir() if not p.name.startswith(".")}
    snap = host_snapshot(disk)
    dry = lifecycle.gc(ctl, HOST, 2, dry_run=True)
    assert host_snapshot(disk) == snap                      # a dry run deletes nothing
    report = lifecycle.gc(ctl, HOST, 2)
    assert sorted(report.deleted_generations) == [1, 2, 4] == sorted(dry.deleted_generations)
    assert report.kept == {3: "booted"}     # 5 and 6 are the newest two
    gens = sorted(int(p.name) for p in (disk / "var/lib/fruix/system/generations").iterdir()
                  if p.name.isdigit())
    assert gens == [3, 5, 6]
    check_host(disk)                                        # every remaining closure complete
    items_after = {p.name for p in store.iterdir() if not p.name.startswith(".")}
    gone = set(items_before) - items_after
    assert len(gone) == 12                                  # 4 distinct items per deleted generation
    left = {ino for p in store.iterdir() if not p.name.startswith(".") for ino in inodes(p)}
    freed = {ino: size for n in gone for ino, size in items_before[n].items() if ino not in left}
    assert report.freed == sum(freed.values()) == dry.freed
    assert {Path(p).name for p, _ in report.deleted_items} == gone
    assert not [p for p in store.iterdir() if p.name.startswith(".")]
    assert not list((disk / "frx/var/fruix/gcroots").glob("system-[124]"))
    ok, lines = deploy.verify(ctl, HOST)
    assert ok, lines
    # Reboot and deploy still work on what is left.
    back, _ = deploy.rollback(ctl, HOST, to=3, reboot=True)
    assert back == 3


def test_gc_never_deletes_a_pinned_generation(runtime_project):
    path, stage, disk = runtime_project
    for n, base in enumerate(["rt-default", "rt-canary", "rt-default", "rt-canary"], start=1):
        change_runtime(stage, n)
        deploy.deploy(Controller(path), HOST, base)
    pinned = path.read_text().replace("web2: {ssh_port:", "web2: {pinned_generations: [1], ssh_port:")
    path2 = path.with_name("pinned.yaml")
    path2.write_text(pinned)
    proc = inv_cmd(path2, "gc", "--host", HOST, "--keep", "1")
    assert proc.returncode == 0, proc.stderr
    assert "deleted generations [2]" in proc.stdout
    gens = sorted(int(p.name) for p in (disk / "var/lib/fruix/system/generations").iterdir()
                  if p.name.isdigit())
    assert gens == [1, 3, 4]                # 1 pinned, 3 rollback, 4 current
    check_host(disk)


def test_diff_between_generations(runtime_project):
    path, stage, disk = runtime_project
    change_runtime(stage, 1)
    a = deploy.deploy(Controller(path), HOST, "rt-default")
    change_runtime(stage, 2)
    b = deploy.deploy(Controller(path), HOST, "rt-canary")
    ctl = Controller(path)
    d = lifecycle.diff(ctl, HOST)                  # rollback -> current
    assert (d.old_generation, d.new_generation) == (a.generation, b.generation)
    assert (d.old_closure, d.new_closure) == (a.closure, b.closure)
    assert (d.old_label, d.new_label) == ("15.0-STABLE", "15.0-STABLE-p1")
    assert len(d.added) == len(d.removed) == 4
    back = lifecycle.diff(ctl, HOST, from_gen=b.generation, to_gen=a.generation)
    assert sorted(back.added) == sorted(d.removed)
    proc = inv_cmd(path, "diff", "--host", HOST, "--from", "1", "--to", "2")
    assert proc.returncode == 0 and "generation 1 rt-default" in proc.stdout
    bad = inv_cmd(path, "diff", "--host", HOST, "--from", "7")
    assert bad.returncode == 2 and "no generation 7" in bad.stderr


def test_local_store_gc_keeps_declared_items(project, tmp_path):
    ctl = Controller(project)
    declared = set(map(str, ctl.build("stable-default", "web1")))
    # Build something no inventory declares any more: a base only in a scratch inventory.
    # (In a directory of its own at the same depth, so its relative paths are
    # the lab inventory's and store.gc, reading inventories/, never sees it.)
    scratch = project.parent.parent / "scratch-inventories" / "scratch.yaml"
    scratch.parent.mkdir(exist_ok=True)
    # Its templates beside it, as the lab inventory's are beside it.
    __import__("shutil").copytree(project.parent / "templates", scratch.parent / "templates",
                                  dirs_exist_ok=True)
    scratch.write_text(project.read_text().replace(
        "  broken-canary:\n", "  gone-base:\n    version_label: 15.0-GONE\n"
        "    release: 15.0-STABLE\n    branch: stable/15\n    source: *stable15\n"
        "  broken-canary:\n", 1))
    old = Controller(scratch).build("gone-base", "web1")
    store = ctl.builder.store
    assert all(store.get(p) for p in old)
    proc = inv_cmd(project, "store.gc", "--dry-run")
    assert proc.returncode == 0 and all(str(p) in proc.stdout for p in old)
    assert all(store.get(p) for p in old)
    would_free = int(proc.stdout.split("would free ")[1].split()[0])
    def on_disk():      # the items' files and their deltas
        return sum(f.stat().st_size for d in (store.items_dir, store.deltas_dir) if d.exists()
                   for f in d.iterdir())
    before = on_disk()
    proc = inv_cmd(project, "store.gc")
    assert proc.returncode == 0, proc.stderr
    assert not any(store.get(p) for p in old)
    assert not any(store.archive(p).exists() for p in old)
    assert all(store.get(__import__("fruixops.store.local").store.local.StorePath(p)) for p in declared)
    freed = int(proc.stdout.split("freed ")[1].split()[0])
    after = on_disk()
    assert freed > 0 and freed == would_free == before - after   # what it says is what went
