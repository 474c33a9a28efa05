"""Hostile input: every case is refused by the host itself, with a clear
message, and nothing on the host changes (a snapshot of every path, mode,
link target and content hash of its disk is the same before and after)."""

import pytest

from conftest import host_snapshot
from fruixops.rollout import deploy
from fruixops.errors import HostError
from hostile import bootable, offer, tar_of

GOOD = [("./bin", "dir", None, 0o555), ("./bin/tool", "file", b"#!/bin/sh\necho hi\n", 0o555)]
SENTINEL = "/var/lib/fruix/sentinel"       # a directory outside /frx/store on the host

HOSTILE = {
    "dotdot": ([("./ok", "file", b"x", 0o444), ("../../../../var/lib/fruix/sentinel/pwned",
                                                 "file", b"owned", 0o444)],
               r"absolute or '\.\.' member"),
    "absolute": ([("/var/lib/fruix/sentinel/pwned", "file", b"owned", 0o444)],
                 r"absolute or '\.\.' member"),
    "symlink_abs_write_through": ([("./evil", "symlink", SENTINEL, 0o777),
                                   ("./evil/pwned", "file", b"owned", 0o444)],
                                  r"absolute or '\.\.' member|cannot unpack"),
    "symlink_rel_write_through": ([("./evil", "symlink", "../../../../../var/lib/fruix/sentinel",
                                    0o777), ("./evil/pwned", "file", b"owned", 0o444)],
                                  r"absolute or '\.\.' member|cannot unpack"),
    "device_node": ([("./dev", "dir", None, 0o555), ("./dev/null", "chardev", None, 0o666)],
                    r"device node|cannot unpack"),
    "fifo": ([("./pipe", "fifo", None, 0o644)], r"device node, fifo"),
    "setuid": (GOOD[:1] + [("./bin/su", "file", b"\x7fELF", 0o4555)], r"setuid/setgid"),
    "setgid": (GOOD[:1] + [("./bin/wall", "file", b"\x7fELF", 0o2555)], r"setuid/setgid"),
    "hardlink_out_abs": ([("./link", "hardlink", "/var/lib/fruix/fruixops/host-name", 0o444)],
                         r"absolute or '\.\.' member|cannot unpack|hard link"),
    "hardlink_out_rel": ([("./link", "hardlink", "../../../../../var/lib/fruix/fruixops/host-name",
                           0o444)], r"absolute or '\.\.' member|cannot unpack|hard link"),
}


@pytest.fixture(scope="module", params=["web2", "web3"], ids=["gnu-tar", "bsdtar"])
def target(request, lab, project):
    """A lab host installed with stable-default, with a sentinel directory."""
    from fruixops.inventory import model as inventory
    from fruixops.controller import Controller
    inv = inventory.load(project)
    host = inv.host(request.param)
    lab.reset([host])
    lab.up([host])
    ctl = Controller(project)
    lab.install(ctl, [host])
    (lab.disk(host.name) / SENTINEL.lstrip("/")).mkdir(parents=True)
    return ctl, host.name, lab.disk(host.name)


@pytest.mark.parametrize("sent,compress", [(False, False), (True, True)],
                         ids=["listed-on-host", "listing-sent-zstd"])
def test_a_well_formed_item_is_accepted(target, tmp_path, monkeypatch, sent, compress):
    """The control case: the crafting helper itself produces acceptable items."""
    from fruixops.rollout import push
    ctl, host, disk = target
    if sent:
        monkeypatch.setattr(push, "SEND_LISTING_FROM", 0)
    gen, landed = offer(ctl, host, bootable(GOOD), tmp_path, compress=compress)
    assert landed == 2
    deploy.rollback(ctl, host)      # back to the installed generation


def test_a_system_the_loader_cannot_boot_is_refused_before_anything_lands(target, tmp_path):
    """Signed and well-formed, but with no kernel for the loader: refused at
    commit, before any item lands or any generation is recorded."""
    ctl, host, disk = target
    before = host_snapshot(disk)
    with pytest.raises(HostError, match="has no kernel link"):
        offer(ctl, host, {"fruix-system-nokernel": tar_of(GOOD)}, tmp_path)
    assert host_snapshot(disk) == before


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(target, tmp_path, case):
    ctl, host, disk = target
    members, message = HOSTILE[case]
    before = host_snapshot(disk)
    with pytest.raises(HostError, match=message):
        offer(ctl, host, {"fruix-system-hostile": tar_of(members)}, tmp_path)
    assert host_snapshot(disk) == before
    assert not list((disk / SENTINEL.lstrip("/")).iterdir())
    assert not [p for p in (disk / "frx/store").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("compress", [False, True], ids=["archive", "zstd"])
def test_flipped_byte_in_transit_is_refused(target, tmp_path, compress):
    ctl, host, disk = target
    before = host_snapshot(disk)

    def flip(data):
        b = bytearray(data)
        b[len(b) // 2] ^= 0x01
        return bytes(b)
    with pytest.raises(HostError, match="content hash does not match"):
        offer(ctl, host, {"fruix-system-x": tar_of(GOOD)}, tmp_path, tamper=flip,
              compress=compress)
    assert host_snapshot(disk) == before


@pytest.mark.parametrize("sent", [False, True], ids=["listed-on-host", "listing-sent"])
def test_listing_that_does_not_match_the_manifest_is_refused(target, tmp_path, monkeypatch,
                                                             sent):
    """The listing `verify` will hold the store to is the one the manifest
    signs: made on the host (small items) or sent (big ones), it must hash to
    the manifest's listing sha256."""
    from fruixops.rollout import push
    ctl, host, disk = target
    if sent:
        monkeypatch.setattr(push, "SEND_LISTING_FROM", 0)
    before = host_snapshot(disk)
    with pytest.raises(HostError, match="its file listing does not match the manifest"):
        offer(ctl, host, {"fruix-system-x": tar_of(GOOD)}, tmp_path,
              tamper_listing=lambda listing: listing.replace(b"./bin/tool", b"./bin/toot"))
    assert host_snapshot(disk) == before


def test_listing_for_an_item_not_in_the_manifest_is_refused(target, tmp_path, monkeypatch):
    from fruixops.rollout import push
    ctl, host, disk = target
    real = push.listings_payload
    monkeypatch.setattr(push, "SEND_LISTING_FROM", 0)
    monkeypatch.setattr(push, "listings_payload", lambda items, store, compress: real(
        items, store, False) + b"=" + b"e" * 64 + b"-other\nd - .\n")
    before = host_snapshot(disk)
    with pytest.raises(HostError, match="unexpected listing for"):
        offer(ctl, host, {"fruix-system-x": tar_of(GOOD)}, tmp_path)
    assert host_snapshot(disk) == before


def test_changed_manifest_byte_is_refused(target, tmp_path):
    ctl, host, disk = target
    before = host_snapshot(disk)

    def edit(data):
        return data.replace(b"version-label x", b"version-label y")
    with pytest.raises(HostError, match="does not verify against any trusted key"):
        offer(ctl, host, {"fruix-system-x": tar_of(GOOD)}, tmp_path, edit_manifest=edit)
    assert host_snapshot(disk) == before


def test_untrusted_signer_is_refused_before_any_item_is_sent(target, tmp_path):
    from fruixops.store import keys
    ctl, host, disk = target
    key_path, _ = keys.generate(tmp_path, "mallory")
    before = host_snapshot(disk)
    with pytest.raises(HostError, match="does not verify"):
        offer(ctl, host, {"fruix-system-x": tar_of(GOOD)}, tmp_path,
              sign_key=keys.load_private(key_path))
    assert host_snapshot(disk) == before
