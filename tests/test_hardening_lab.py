"""The host side, tried as an attacker and as a crash would (issue 13): trust
changes need a signature from a key the host already trusts; a serial from a
clock far ahead is refused; unpacking never restores file capabilities and
refuses group- or other-writable entries; a cut or empty generation record is
corrupt, never "complete"; receivers killed at random points of a deploy, a
gc or a trust change leave the host whole."""

import base64
import os
import struct
import time

import pytest

from conftest import host_snapshot, inv_cmd
from faultlab import check_host, kill_campaign, loader_default
from fruixops.rollout import deploy
from fruixops.store import keys
from fruixops.rollout import lifecycle
from fruixops.store import manifest
from fruixops.remote import trust
from fruixops.remote.connection import HostConnection
from fruixops.errors import HostError
from hostile import bootable, offer, tar_of


def disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def connect(ctl, host):
    return HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()


@pytest.fixture
def installed(fresh):
    def _installed(host):
        ctl = fresh(host)
        deploy.deploy(ctl, host, "stable-default", reboot=True)
        return ctl
    return _installed


def test_ssh_access_alone_cannot_change_whom_a_host_trusts(installed, tmp_path):
    ctl = installed("db1")
    d = disk(ctl, "db1")
    inv = ctl.inventory.path
    intruder_key, intruder_pub = keys.generate(tmp_path, "intruder")
    before = host_snapshot(d)
    # The attack of the issue: add one's own key, remove the fleet's.
    proc = inv_cmd(inv, "trust.add", "--host", "db1", "--key", str(intruder_pub),
                   "--signing-key", str(intruder_key))
    assert proc.returncode == 2 and "does not verify against any trusted key" in proc.stderr
    proc = inv_cmd(inv, "trust.remove", "--host", "db1", "--name", "lab",
                   "--signing-key", str(intruder_key))
    assert proc.returncode == 2 and "does not verify against any trusted key" in proc.stderr
    hc = connect(ctl, "db1")
    try:       # the receiver's old interface: a bare PEM, no statement
        r = hc.run(hc.receiver("trust-add", "intruder"), stdin=intruder_pub.read_bytes())
        assert r.status == 2 and "cannot read the bundle" in r.err
        # A statement the fleet's key signed for another host, or to add another key.
        other = trust.change("db2", "add", "intruder", ctl.signing_key, "lab",
                             intruder_pub.read_bytes())
        r = hc.run(hc.receiver("trust-add", "intruder"), stdin=other)
        assert r.status == 2 and "is for host 'db2'" in r.err
    finally:
        hc.close()
    assert host_snapshot(d) == before
    # Rotation by the book: the fleet's key signs the new one in, the new one
    # signs the old one out.
    new_key, new_pub = keys.generate(tmp_path, "next")
    inv_cmd(inv, "trust.add", "--host", "db1", "--key", str(new_pub), check=True)
    assert deploy.deploy(type(ctl)(inv, key=new_key), "db1", "stable-canary").generation == 2
    proc = inv_cmd(inv, "trust.remove", "--host", "db1", "--name", "lab",
                   "--signing-key", str(new_key), check=True)
    assert "untrusted lab" in proc.stdout and "signed-by next" in proc.stdout
    with pytest.raises(HostError, match="does not verify against any trusted key"):
        deploy.deploy(ctl, "db1", "stable-default")


def test_a_trust_statement_cannot_be_replayed(installed, tmp_path):
    ctl = installed("db2")
    _, pub = keys.generate(tmp_path, "extra")
    change = trust.change("db2", "add", "extra", ctl.signing_key, "lab", pub.read_bytes())
    hc = connect(ctl, "db2")
    try:
        hc.check(hc.receiver("trust-add", "extra"), stdin=change)
        hc.check(hc.receiver("trust-remove", "extra"),
                 stdin=trust.change("db2", "remove", "extra", ctl.signing_key, "lab"))
        r = hc.run(hc.receiver("trust-add", "extra"), stdin=change)
    finally:
        hc.close()
    assert r.status == 2 and "replay refused" in r.err
    assert not (disk(ctl, "db2") / "var/lib/fruix/fruixops/trusted/extra.pem").exists()


def test_a_serial_far_ahead_of_the_hosts_clock_is_refused(installed):
    """A signed serial of 2^63-1 (or a controller clock years ahead) would lock
    the host out of every later deploy: refused, nothing changed."""
    ctl = installed("web2")
    d = disk(ctl, "web2")
    before = host_snapshot(d)
    for serial in (2**63 - 1, (int(time.time()) + 10 * 86400) * 1000):
        _, data, sig = ctl.make_manifest("web2", "stable-canary", serial=serial)
        with pytest.raises(HostError, match="more than a day ahead"):
            deploy.deploy(ctl, "web2", prepared=(manifest.parse(data), data, sig))
        assert host_snapshot(d) == before
    assert deploy.deploy(ctl, "web2", "stable-canary").generation == 2


CAP_SETUID = base64.b64encode(struct.pack("<5I", 0x02000001, 1 << 7, 0, 0, 0)).decode()


@pytest.mark.parametrize("host", ["web2", "web3"], ids=["gnu-tar", "bsdtar"])
def test_unpacking_never_restores_file_capabilities(installed, tmp_path, host):
    """bsdtar, run as root, restores extended attributes by default: a
    cap_setuid file would make an unprivileged user root."""
    ctl = installed(host)
    members = [("./bin", "dir", None, 0o555), ("./bin/tool", "file", b"#!/bin/sh\n", 0o555)]
    archives = bootable(members)
    system = archives["fruix-system-ok"]

    def with_xattr(paths):
        data = system(paths)
        import io
        import tarfile
        out = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(data)) as src, \
                tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
            for m in src.getmembers():
                if m.name == "./bin/tool":
                    m.pax_headers = {"LIBARCHIVE.xattr.security.capability": CAP_SETUID,
                                     "SCHILY.xattr.security.capability": CAP_SETUID}
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        return out.getvalue()

    archives["fruix-system-ok"] = with_xattr
    tools = lambda: list((disk(ctl, host) / "frx/store").glob("*-fruix-system-ok/bin/tool"))  # noqa: E731
    if host == "web2":
        # GNU tar says it ignores the header: anything tar says refuses the item.
        with pytest.raises(HostError, match="unknown extended header"):
            offer(ctl, host, archives, tmp_path)
        assert tools() == []
    else:
        # bsdtar would restore it: told not to, it lands as a plain file.
        offer(ctl, host, archives, tmp_path)
        assert len(tools()) == 1 and os.listxattr(tools()[0]) == []


def test_group_or_other_writable_entries_are_refused(installed, tmp_path):
    ctl = installed("db1")
    d = disk(ctl, "db1")
    before = host_snapshot(d)
    for mode in (0o464, 0o446, 0o575):
        with pytest.raises(HostError, match="writable entry"):
            offer(ctl, "db1", {"fruix-system-w": tar_of([("./f", "file", b"x", mode)])}, tmp_path)
    assert host_snapshot(d) == before


def test_a_cut_or_empty_generation_record_is_corrupt(installed):
    """What a power loss without flushing left (an empty manifest) must never
    read as a complete generation: verify says so, nothing switches to it,
    and a redeploy of the same closure does not call it 'unchanged'."""
    ctl = installed("web1")
    deploy.deploy(ctl, "web1", "stable-canary")
    d = disk(ctl, "web1")
    (d / "var/lib/fruix/system/generations/1/manifest").write_bytes(b"")
    ok, lines = deploy.verify(ctl, "web1")
    assert not ok and "corrupt generation 1" in lines
    with pytest.raises(HostError, match="incomplete or corrupt"):
        deploy.rollback(ctl, "web1", to=1)
    assert loader_default(d) == 2
    (d / "var/lib/fruix/system/generations/2/manifest").write_bytes(b"")
    r = deploy.deploy(ctl, "web1", "stable-canary")
    assert r.changed and r.generation == 3
    assert loader_default(d) == 3


def test_receivers_killed_at_random_points_leave_the_host_whole(installed, tmp_path):
    ctl = installed("web1")
    trials = int(os.environ.get("FRUIXOPS_FAULT_TRIALS", "20")) // 4 or 1
    bases = iter(["stable-canary", "stable-default"] * trials)
    k1, c1 = kill_campaign(ctl, "web1", lambda: deploy.deploy(ctl, "web1", next(bases)),
                            "receiver (receive|[i]tem)", trials, 1)
    k2, c2 = kill_campaign(ctl, "web1", lambda: lifecycle.gc(ctl, "web1", 1),
                            "receiver [g]c", trials, 2)
    _, pub = keys.generate(tmp_path, "extra")

    def trust_flip():
        hc = connect(ctl, "web1")
        try:
            from fruixops.rollout import bootstrap
            bootstrap.trust_add(hc, "extra", pub.read_bytes(), ctl.signing_key, "lab")
            bootstrap.trust_remove(hc, "extra", ctl.signing_key, "lab")
        finally:
            hc.close()
    k3, c3 = kill_campaign(ctl, "web1", trust_flip, "receiver [t]rust-", trials, 3)
    trusted = sorted(p.name for p in (disk(ctl, "web1") / "var/lib/fruix/fruixops/trusted")
                     .glob("*.pem"))
    assert trusted in (["lab.pem"], ["extra.pem", "lab.pem"])
    # And everything still works afterwards.
    r = deploy.deploy(ctl, "web1", "stable-canary", reboot=True)
    assert r.booted_generation == r.generation
    print(f"\nreceiver SIGKILL ({trials} trials each): deploy {k1} killed / {c1} completed, "
          f"gc {k2} / {c2}, trust changes {k3} / {c3}; host whole after each")


def test_gc_keeps_a_generation_to_go_back_to_even_when_rollback_is_current(installed):
    """A receiver killed between its two link renames used to leave
    rollback == current, and `gc --keep 1` then deleted the last good
    generation. Whatever the links say, the newest complete generation
    besides the default stays."""
    ctl = installed("web2")
    deploy.deploy(ctl, "web2", "stable-canary")                  # generation 2
    d = disk(ctl, "web2")
    system = d / "var/lib/fruix/system"
    os.unlink(system / "rollback")
    os.symlink("generations/2", system / "rollback")            # the kill window, by hand
    report = lifecycle.gc(ctl, "web2", 1)
    assert report.deleted_generations == [] and report.kept == {1: "booted"}
    deploy.deploy(ctl, "web2", "stable-default")                 # generation 3, booted is 1
    os.unlink(system / "rollback")
    os.symlink("generations/3", system / "rollback")
    deploy.reboot_host(ctl, "web2")                              # booted: 3
    report = lifecycle.gc(ctl, "web2", 1)
    assert report.kept == {2: "previous"} and report.deleted_generations == [1]
    check_host(d)


def test_a_lock_whose_pid_was_reused_is_stale(installed):
    ctl = installed("db2")
    hc = connect(ctl, "db2")
    try:
        # A live process with the dead holder's pid, started at another time.
        hc.check("sleep 300 >/dev/null 2>&1 & "
                 "ln -s \"pid=$!,boot=$(sysctl -n kern.boottime | sed 's/{ sec = \\([0-9]*\\), "
                 "usec = \\([0-9]*\\) }.*/\\1.\\2/'),since=1,by=alice@ops,cmd=receive,"
                 "start=Thu_Jan_1_00:00:00_1970\" /var/lib/fruix/fruixops/lock")
    finally:
        hc.close()
    assert deploy.deploy(ctl, "db2", "stable-canary").generation == 2


def test_clean_up_leaves_a_running_plans_temporary_files(installed):
    ctl = installed("web1")
    hc = connect(ctl, "web1")
    try:
        # What an unlocked plan or verify has while it runs: a directory named
        # after its live process.
        pid = hc.check("sleep 300 >/dev/null 2>&1 & echo $!").out.strip()
        hc.check(f"mkdir /frx/store/.fruixops-tmp.{pid} && touch /frx/store/.fruixops-tmp.{pid}/x")
        deploy.deploy(ctl, "web1", "stable-canary")                 # cleans up, under the lock
        assert hc.run(f"test -f /frx/store/.fruixops-tmp.{pid}/x").status == 0
        hc.check(f"kill {pid}; while kill -0 {pid} 2>/dev/null; do :; done")
        deploy.deploy(ctl, "web1", "stable-default")               # its owner gone: a leftover
        assert hc.run(f"test -e /frx/store/.fruixops-tmp.{pid}").status != 0
    finally:
        hc.close()


def test_what_was_unpacked_is_compared_with_the_signed_listing_whatever_its_size(
        installed, tmp_path, monkeypatch):
    """A listing sent along (big items) that matches the manifest used to be
    taken at its word: an item whose unpacked tree is not that listing (a
    truncated unpack, or a signer's archive and listing that disagree)
    landed. The tree is now compared with it, for every item: listed on the
    host, or (a whole item whose archive hash checked, with its listing sent)
    held to the listing's names, kinds, modes and link targets."""
    from fruixops.rollout import push
    ctl = installed("web2")
    d = disk(ctl, "web2")
    fake = lambda listing: listing.replace(b"./bin/tool", b"./bin/toot")  # noqa: E731
    monkeypatch.setattr(push, "SEND_LISTING_FROM", 0)
    monkeypatch.setattr(push, "listings_payload", lambda items, store, compress: b"".join(
        b"=" + it.path.base.encode() + b"\n" + fake(store.listing(it.path)) for it in items))
    before = host_snapshot(d)
    with pytest.raises(HostError, match="its file listing does not match the manifest|"
                                        "is not what its listing says"):
        offer(ctl, "web2", {"fruix-system-x": tar_of(
            [("./bin", "dir", None, 0o555), ("./bin/tool", "file", b"#!/bin/sh\n", 0o555)])},
              tmp_path, tamper_listing=fake)
    assert host_snapshot(d) == before
