"""Hosts pull their items from the lab's real nginx, and offline bundles are
carried in and imported as a console would: nothing from the cache or a
bundle is trusted but what hashes to the signed manifest.

The test lab's inventory has no cache (every other test pushes); these tests
use lab-cache.yaml, the same lab with the cache (conftest.make_project)."""

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import host_snapshot, inv_cmd, openssh
from faultlab import kill_campaign
from fruixops.rollout import deploy, fleet
from fruixops.inventory import model as inventory
from fruixops.rollout import lifecycle
from fruixops.store import manifest as manifest_mod
from fruixops.rollout import offline
from fruixops.controller import Controller
from fruixops.lab import Lab
from fruixops.lab.webcache import WebCache


@pytest.fixture(scope="module")
def cached(lab, project):
    """The lab-cache inventory's nginx up, serving an empty cache directory;
    returns the inventory path."""
    path = project.with_name("lab-cache.yaml")
    web = WebCache.of(Lab(inventory.load(path)))
    assert web is not None and web.port > 0
    subprocess.run(["rm", "-rf", str(web.root)], check=True)
    web.up()
    yield path
    web.down()
    assert web.pid() is None


def _cache_dir(path):
    return Path(inventory.load(path).settings.cache.upload)


def _objects(path):
    d = _cache_dir(path) / "objects"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in d.iterdir()}


def _verify(ctl, host):
    ok, lines = deploy.verify(ctl, host)
    assert ok, lines
    return lines


def test_cache_push_uploads_each_object_once(cached):
    first = inv_cmd(cached, "cache.push", check=True)
    assert "already there" in first.stdout and "uploaded 0 objects" not in first.stdout
    objs = _objects(cached)
    # Three objects per item (archive, zstd form, listing), named by hash.
    assert len(objs) % 3 == 0 and len(objs) >= 12
    assert all(len(n.split(".")[0]) == 64 for n in objs)
    assert not [p for p in (_cache_dir(cached) / "objects").iterdir() if p.name.startswith(".")]
    again = inv_cmd(cached, "cache.push", check=True)
    assert f"uploaded 0 objects (0 bytes), {len(objs)} already there" in again.stdout
    checked = inv_cmd(cached, "cache.verify", check=True)
    assert f"checked {len(objs)} objects" in checked.stdout and "; 0 bad" in checked.stdout
    assert _objects(cached) == objs          # not rewritten: same inodes, same mtimes
    # Served as they are, by the real web server.
    name = sorted(objs)[0]
    url = inventory.load(cached).settings.cache.url
    got = subprocess.run(["curl", "-fsS", f"{url}objects/{name}"], capture_output=True,
                         check=True).stdout
    assert got == (_cache_dir(cached) / "objects" / name).read_bytes()


def test_fleet_deploy_pulls_from_the_cache(cached, fresh):
    fresh("web2", "db2", "mon1", "db1", "web1")
    inv_cmd(cached, "cache.push", check=True)
    ctl = Controller(cached)
    hosts = [ctl.inventory.host(n) for n in ("web2", "db2", "mon1", "db1")]
    planned = lifecycle.plan(ctl, "web2")
    outcomes, _ = fleet.deploy_many(ctl, hosts)
    assert outcomes.exit_status() == 0, [o.messages for o in outcomes.values()]
    pushed = deploy.deploy(Controller(cached), "web1", use_cache=False)   # the same, pushed
    for o in outcomes.values():
        r = o.results[0]
        # Every item pulled, none pushed: the controller sent the manifest and
        # control only (db2 pulls with the lab's FreeBSD fetch(1), mon1
        # through its restricted key, db1 through doas).
        assert r["pulled"] == r["items_sent"] == 4, r
        assert r["bytes_fetched"] >= 0.9 * pushed.bytes_sent
        assert r["bytes_sent"] < 16384 and r["bytes_sent"] < pushed.bytes_sent / 20, r
        assert not [n for n in r["notes"] if "pushed instead" in n]
        _verify(ctl, r["host"])
    web2 = outcomes["web2"].results[0]
    assert (planned.bytes_to_send, planned.bytes_to_fetch) == (web2["bytes_sent"],
                                                               web2["bytes_fetched"])
    assert len(planned.pull) == 4
    log = (Path(WebCache.of(Lab(ctl.inventory)).prefix) / "access.log").read_text()
    assert log.count('"GET /objects/') >= 16 and '" 200 ' in log


def test_tampered_cut_and_missing_objects_are_pushed_instead(cached, fresh):
    ctl = fresh("web2")
    inv_cmd(cached, "cache.push", check=True)
    ctl = Controller(cached)
    host = ctl.inventory.host("web2")
    items = ctl.closure(host, ctl.inventory.base_for(host))
    store = ctl.builder.store
    objects = _cache_dir(cached) / "objects"
    zst = {it.path.name: objects / f"{store.transfer_info(it.path)['zstd']}.tar.zst"
           for it in items}
    by_size = sorted(zst, key=lambda n: zst[n].stat().st_size)
    tampered, cut, endless, missing = by_size[-1], by_size[-2], by_size[1], by_size[0]
    saved = {n: zst[n].read_bytes() for n in (tampered, cut, endless, missing)}
    try:
        for n in (tampered, cut, endless):
            os.chmod(zst[n], 0o644)
        data = bytearray(saved[tampered])
        data[len(data) // 2] ^= 0xFF
        zst[tampered].write_bytes(bytes(data))
        zst[cut].write_bytes(saved[cut][: len(saved[cut]) // 2])
        # The right bytes, then far more than the item can be: the host
        # stops reading at zstd's bound on the signed size.
        zst[endless].write_bytes(saved[endless] + os.urandom(8 << 20))
        zst[missing].unlink()
        r = deploy.deploy(ctl, "web2")
        found = inv_cmd(cached, "cache.verify", "--repair")
        # The bad objects deleted, the next cache.push puts them back whole.
        again = inv_cmd(cached, "cache.push", "--host", "web2", check=True)
        clean = inv_cmd(cached, "cache.verify", check=True)
    finally:
        for n, data in saved.items():
            zst[n].unlink(missing_ok=True)
            zst[n].write_bytes(data)
    assert found.returncode == 2 and found.stdout.count("bad objects/") == 3, found.stdout
    assert found.stdout.count("; deleted") == 3
    assert "uploaded 4 objects" in again.stdout and "; 0 bad" in clean.stdout
    assert r.items_sent == 4 and r.pulled == 0
    refused = {n.split(":")[0]: n for n in r.notes if "pushed instead" in n}
    assert len(refused) == 4, r.notes
    assert not list((Lab(ctl.inventory).disk("web2") / "frx/store").glob(".fruixops-tmp*"))
    assert "content hash does not match" in next(v for k, v in refused.items()
                                                 if k.endswith(tampered))
    assert "Not Found" in next(v for k, v in refused.items() if k.endswith(missing)) or \
        "404" in next(v for k, v in refused.items() if k.endswith(missing))
    _verify(ctl, "web2")
    assert deploy.status(ctl, "web2").current == r.generation


def test_a_host_pushed_uncompressed_pulls_the_plain_archives(cached, fresh):
    """--compress none: the host pulls objects/SHA.tar, and plan says so."""
    fresh("web2")
    inv_cmd(cached, "cache.push", "--host", "web2", check=True)
    ctl = Controller(cached)
    planned = lifecycle.plan(ctl, "web2", compress="none")
    r = deploy.deploy(Controller(cached), "web2", compress="none")
    assert not r.compressed and r.pulled == 4
    store = ctl.builder.store
    host = ctl.inventory.host("web2")
    items = ctl.closure(host, ctl.inventory.base_for(host))
    listings = sum(len(store.listing(it.path)) for it in items if it.size >= 1 << 20)
    assert r.bytes_fetched == sum(it.size for it in items) + listings
    assert (planned.bytes_to_send, planned.bytes_to_fetch) == (r.bytes_sent, r.bytes_fetched)
    log = (Path(WebCache.of(Lab(ctl.inventory)).prefix) / "access.log").read_text()
    assert all(f"GET /objects/{it.sha256}.tar " in log for it in items)
    _verify(ctl, "web2")


def _bundle(ctl_path, host, out, *extra):
    return inv_cmd(ctl_path, "bundle.export", "--host", host, "--out", str(out), *extra,
                   check=True)


def test_bundle_imported_at_the_console(cached, fresh, tmp_path):
    """An air-gapped host: its SSH only carries the file in and runs the
    import, as an operator at its console would (cat, then sh receiver)."""
    fresh("web2")
    inv_cmd(cached, "bootstrap", "--host", "web2", check=True)
    out = tmp_path / "web2.bundle"
    _bundle(cached, "web2", out, "--valid", "7d")
    ctl = Controller(cached)
    assert openssh(ctl, "web2", "cat > /root/web2.bundle", stdin=out.read_bytes()).returncode == 0
    r = openssh(ctl, "web2", "sh /var/lib/fruix/fruixops/receiver import /root/web2.bundle")
    assert r.returncode == 0, r.stderr
    assert b"generation 1" in r.stdout and b"landed 4" in r.stdout
    state = deploy.status(ctl, "web2")
    assert state.default == 1 and state.current == 1
    # The manifest it landed was signed for a week.
    m = manifest_mod.parse(openssh(ctl, "web2", "sh /var/lib/fruix/fruixops/receiver manifest 1")
                           .stdout)
    assert 7 * 86400 - 120 <= m.expires - m.issued <= 7 * 86400
    state = deploy.reboot_host(ctl, "web2")
    assert state.booted_generation == 1
    _verify(ctl, "web2")


def test_bad_bundles_are_refused_and_change_nothing(cached, fresh, tmp_path, monkeypatch):
    fresh("db2")
    inv_cmd(cached, "bootstrap", "--host", "db2", check=True)
    ctl = Controller(cached)
    disk = Lab(ctl.inventory).disk("db2")
    good = tmp_path / "db2.bundle"
    _bundle(cached, "db2", good)
    other = tmp_path / "web1.bundle"
    _bundle(cached, "web1", other)
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    edited = tmp_path / "edited.bundle"
    data = bytearray(good.read_bytes())
    with tarfile.open(good) as tar:           # one bit of the biggest item's bytes
        biggest = max((m for m in tar.getmembers() if m.name.endswith(".tar.zst")),
                      key=lambda m: m.size)
    data[biggest.offset_data + biggest.size // 2] ^= 0x01
    edited.write_bytes(bytes(data))
    expired = tmp_path / "expired.bundle"
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 7200)   # signed 2 h ago, for 1 h
    offline.export(Controller(cached), [ctl.inventory.host("db2")], expired)
    monkeypatch.undo()
    before = host_snapshot(disk)
    for bundle, why in ((other, "holds no manifest for 'db2'"), (cut, "not a whole bundle"),
                        (edited, "does not match"), (expired, "expired")):
        proc = inv_cmd(cached, "bundle.import", str(bundle), "--host", "db2")
        assert proc.returncode == 2, (bundle, proc.stdout, proc.stderr)
        assert why in proc.stderr, (bundle, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
        assert host_snapshot(disk) == before, bundle
    ok = inv_cmd(cached, "bundle.import", str(good), "--host", "db2", check=True)
    assert "generation 1" in ok.stdout
    again = inv_cmd(cached, "bundle.import", str(good), "--host", "db2")
    assert again.returncode == 2 and "replay refused" in again.stderr
    _verify(ctl, "db2")


def test_one_bundle_for_many_hosts_holds_each_item_once(cached, fresh, tmp_path):
    out = tmp_path / "fleet.bundle"
    one = tmp_path / "one.bundle"
    _bundle(cached, "web2", one)
    r = inv_cmd(cached, "bundle.export", "--limit", "web:db", "--out", str(out), "--json",
                check=True)
    import json
    done = json.loads(r.stdout)
    assert sorted(done["hosts"]) == ["db1", "db2", "web1", "web2", "web3"]
    # The hosts share every item but their system: 5 systems + 3 shared.
    assert done["items"] == 5 + 3
    assert out.stat().st_size < 1.5 * one.stat().st_size
    # Any of its hosts takes its own manifest from it.
    fresh("web2")
    inv_cmd(cached, "bootstrap", "--host", "web2", check=True)
    ok = inv_cmd(cached, "bundle.import", str(out), "--host", "web2", check=True)
    assert "generation 1, 4 items landed" in ok.stdout
    _verify(Controller(cached), "web2")


def test_cache_push_over_sftp_checks_the_host_key(cached, lab, tmp_path):
    """upload: ssh://... -- here a lab host's sshd, its key in known_hosts."""
    text = cached.read_text()
    web1 = inventory.load(cached).host("web1")
    up = f"ssh://root@127.0.0.1:{web1.var('ssh_port')}/root/cache"
    other = cached.with_name("lab-sftp.yaml")
    other.write_text(text.replace("upload: ../.lab/cache",
                                  f"upload: {up}\n    upload_key: ../.lab/id_ed25519"))
    first = inv_cmd(other, "cache.push", "--host", "web1", check=True)
    assert "uploaded 12 objects" in first.stdout, first.stdout
    landed = lab.disk("web1") / "root/cache/objects"
    assert len(list(landed.iterdir())) == 12
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in landed.iterdir())
    again = inv_cmd(other, "cache.push", "--host", "web1", check=True)
    assert "uploaded 0 objects (0 bytes), 12 already there" in again.stdout
    # A cache host whose key is not known is never written to.
    (tmp_path / "empty").write_text("")
    other.write_text(other.read_text().replace("known_hosts: ../.lab/known_hosts",
                                               f"known_hosts: {tmp_path / 'empty'}"))
    refused = inv_cmd(other, "cache.push", "--host", "web1")
    assert refused.returncode == 2 and "host key" in refused.stderr, refused.stderr


def test_bundle_import_through_the_restricted_key(cached, fresh, tmp_path):
    """mon1 lets fruixops's key run the receiver and nothing else: the
    bundle goes in on the receiver's stdin (import -)."""
    ctl = fresh("mon1")
    out = tmp_path / "mon1.bundle"
    _bundle(cached, "mon1", out, "--compress", "none")
    ok = inv_cmd(cached, "bundle.import", str(out), "--host", "mon1", "--reboot", check=True)
    assert "generation 1" in ok.stdout and "booted generation 1" in ok.stdout
    with tarfile.open(out) as tar:          # items as plain archives, for hosts without zstd
        names = tar.getnames()
    assert [n for n in names if n.endswith(".tar")] and not [n for n in names if n.endswith(".zst")]
    _verify(Controller(cached), "mon1")
    del ctl


def test_fleet_upgrade_pulls_its_deltas_and_listings_too(cached, fresh):
    """An upgrade of hosts that hold most files already: the listings they
    are asked about and the deltas of what they lack come from the cache
    too (each delta uploaded once for the fleet); the controller sends the
    manifest and control only. A tampered delta is pushed instead."""
    names = ("web2", "db2", "mon1")
    fresh(*names)
    inv_cmd(cached, "cache.push", "--base", "stable-default", check=True)
    inv_cmd(cached, "cache.push", "--base", "stable-canary", check=True)
    ctl = Controller(cached)
    hosts = [ctl.inventory.host(n) for n in names]
    first, _ = fleet.deploy_many(ctl, hosts, "stable-default")
    assert first.exit_status() == 0
    planned = lifecycle.plan(Controller(cached), "web2", "stable-canary")
    ctl = Controller(cached)
    outcomes, _ = fleet.deploy_many(ctl, hosts, "stable-canary")
    assert outcomes.exit_status() == 0, [o.messages for o in outcomes.values()]
    results = [o.results[0] for o in outcomes.values()]
    for r in results:
        assert r["deltas"] == 3 and r["pulled"] == 4 and r["reused_files"] > 0, r
        assert r["bytes_sent"] < 8192, r          # manifest, signature, control
        assert not [n for n in r["notes"] if "pushed instead" in n], r["notes"]
        _verify(ctl, r["host"])
    web2 = outcomes["web2"].results[0]
    assert (planned.bytes_to_send, planned.bytes_to_fetch) == (web2["bytes_sent"],
                                                               web2["bytes_fetched"])
    deltas = list((_cache_dir(cached) / "deltas").iterdir())
    assert len(deltas) == 3
    assert sum(r["cache_uploaded"] for r in results) == sum(p.stat().st_size for p in deltas)

    # The same upgrade again, from a cache whose deltas were tampered with.
    for p in deltas:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        os.chmod(p, 0o644)
        p.write_bytes(bytes(data))
    fresh("web2")
    deploy.deploy(Controller(cached), "web2", "stable-default")
    r = deploy.deploy(Controller(cached), "web2", "stable-canary")
    refused = [n for n in r.notes if "pushed instead" in n]
    assert r.deltas == 3 and r.pulled == 1 and len(refused) == 3, r.notes
    assert r.cache_uploaded == 0                  # a delta already there is not written again
    _verify(ctl, "web2")


def test_receivers_killed_at_random_points_of_a_pull_leave_the_host_whole(cached, fresh):
    """SIGKILL of the receive, a pull or the listings' pull, at random
    points of deploys through the cache (fresh items and upgrades)."""
    ctl = fresh("web1")
    inv_cmd(cached, "cache.push", "--host", "web1", "--base", "stable-default", check=True)
    inv_cmd(cached, "cache.push", "--host", "web1", "--base", "stable-canary", check=True)
    ctl = Controller(cached)
    deploy.deploy(ctl, "web1", "stable-default")
    trials = int(os.environ.get("FRUIXOPS_FAULT_TRIALS", "20")) // 4 or 1
    bases = iter(["stable-canary", "stable-default"] * trials)
    killed, completed = kill_campaign(
        ctl, "web1", lambda: deploy.deploy(Controller(cached), "web1", next(bases)),
        "receiver (receive|[p]ull|[l]istings)", trials, 4)
    r = deploy.deploy(Controller(cached), "web1", "stable-canary", reboot=True)
    assert r.booted_generation == r.generation
    _verify(ctl, "web1")
    print(f"\nreceiver SIGKILL during pulls ({trials} trials): {killed} killed / "
          f"{completed} completed; host whole after each")
