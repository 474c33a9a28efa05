"""The second red-team round (issue 21), each finding a test on the lab: a
delta that would write outside the store, a doas account that would become
root through --esp, a cache too slow to wait for, bundles read as root, and
the smaller faults. Each test fails on the receiver before the fix for the
reason it is named after, and checks the host's disk afterwards."""

import http.server
import io
import re
import subprocess
import tarfile
import threading
import time

import pytest

from conftest import host_snapshot, inv_cmd, openssh
from fruixops.store import archive
from fruixops.rollout import deploy, lifecycle, push
from fruixops.remote import receiver
from fruixops.store import local as store_mod
from fruixops.remote.connection import HostConnection
from fruixops.controller import Controller
from fruixops.rollout.switch import deployer_identity
from hostile import bootable, offer


def _disk(ctl, host):
    return (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()


def _rx(ctl, host, *args, user="root", stdin=b""):
    """The receiver run over OpenSSH's own client, as a holder of the key
    would (through doas for a doas host's deploy account)."""
    prefix = "doas -n " if user != "root" else "sh "
    return openssh(ctl, host, prefix + receiver.PATH + " " + " ".join(args), user=user,
                   stdin=stdin)


# -- 1. an unsigned delta never writes outside the receive ------------------

def _leaf_dirs_with_linked_files(listing, need):
    """Directories of an item that hold no directory, no symlink, no empty
    file and no content the host lacks: a delta carries only their entry,
    and the host links every file of theirs from its store."""
    dirs, bad, files = set(), set(), {}
    for line in listing.decode().splitlines():
        kind, key, path = line.split(" ", 2)
        parent = path.rsplit("/", 1)[0]
        if kind == "d":
            dirs.add(path)
            bad.add(parent)
        elif kind == "l":
            bad.add(parent)
        else:
            files.setdefault(parent, []).append((kind, key))
            if (kind, key) in need or key == archive.EMPTY_SHA:
                bad.add(parent)
    return sorted(d for d in dirs if d in files and d not in bad and d != ".")


@pytest.mark.parametrize("target", ["outside", "booted-system"])
def test_a_delta_with_a_symlinked_directory_writes_nothing_outside_the_receive(
        fresh, monkeypatch, target):
    """The delta turns a directory whose files the host links from its store
    into a symlink: to a directory outside the store, or into the system
    item the host booted. The receiver must refuse it before linking (the
    shape is not the signed listing's), then take the whole item."""
    ctl = fresh("db2")
    first = deploy.deploy(ctl, "db2", "stable-default")
    disk = _disk(ctl, "db2")
    outside = disk / "var/lib/fruix/outside"
    outside.mkdir()
    aim = "/var/lib/fruix/outside" if target == "outside" else first.closure
    booted_system = host_snapshot(disk / first.closure.lstrip("/"))
    real_delta = store_mod.LocalStore.delta
    aimed = []

    def hostile(self, path, need, compress):
        f, _ = real_delta(self, path, need, False)
        leaves = _leaf_dirs_with_linked_files(self.listing(path), need)
        if not leaves:
            return real_delta(self, path, need, compress)
        aimed.append(leaves[0])
        out = io.BytesIO()
        with tarfile.open(f) as src, tarfile.open(fileobj=out, mode="w",
                                                  format=tarfile.PAX_FORMAT) as dst:
            for m in src:
                if m.name == leaves[0]:
                    m = tarfile.TarInfo(m.name)
                    m.type, m.linkname, m.mode = tarfile.SYMTYPE, aim, 0o777
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        bad = f.with_suffix(".bad")
        data = out.getvalue()
        if compress:
            import zstandard
            data = zstandard.ZstdCompressor().compress(data)
        bad.write_bytes(data)
        return bad, len(data)

    monkeypatch.setattr(store_mod.LocalStore, "delta", hostile)
    try:
        r = deploy.deploy(ctl, "db2", "stable-canary")
    except deploy.DeployFailed as exc:
        r = exc
    assert aimed, "no item had a directory to aim at"
    assert list(outside.iterdir()) == []
    assert host_snapshot(disk / first.closure.lstrip("/")) == booted_system
    assert not isinstance(r, Exception), r
    refused = [n for n in r.notes if "its delta refused" in n]
    assert len(refused) == len(aimed) and all(f"l {aim} " in n for n in refused), r.notes
    ok, lines = deploy.verify(ctl, "db2")
    assert ok, lines


def _receive(ctl, host, base):
    """A receive opened as push() opens it: (connection, session, pid, token,
    manifest, store)."""
    m, data, sig = ctl.make_manifest(host, base)
    hc = HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()
    state = push.plan(hc, data, sig, ctl.trusted_keys())
    session = hc.session(hc.receiver("receive", "--deployer", deployer_identity()))
    session.send(push._opening(data, sig))
    ready = session.readline().split()
    assert ready[0] == "ready" and len(ready) == 3, ready
    return hc, session, ready[1], ready[2], m, state


def test_item_listings_and_pull_are_bound_to_the_receive_that_opened_them(fresh):
    """The receive's pid is no secret (status shows the lock); a command
    that adds to it without its token is refused and adds nothing."""
    ctl = fresh("web2")
    hc, session, pid, token, m, state = _receive(ctl, "web2", "stable-default")
    store = ctl.builder.store
    items = push.missing_items("web2", m, state.missing)
    try:
        assert len(token) == 32
        it = items[0]
        for first_line in (b"", f"token {'0' * 32}\n".encode(), f"token {token}x\n".encode()):
            r = hc.run(hc.receiver("item", pid, it.path.base),
                       stdin=first_line + store.archive(it.path).read_bytes())
            assert r.status == 2 and "only its own controller" in r.err, r.err
        r = hc.run(hc.receiver("listings", pid), stdin=b"=" + it.path.base.encode() + b"\n")
        assert r.status == 2 and "only its own controller" in r.err
        r = hc.run(hc.receiver("pull", pid, it.path.base, "http://127.0.0.1:9/", "tar"))
        assert r.status == 2 and "only its own controller" in r.err
        # Its own controller's items go in, and the receive commits.
        for it in items:
            r = hc.run(hc.receiver("item", pid, it.path.base),
                       stdin=f"token {token}\n".encode() + store.archive(it.path).read_bytes())
            assert r.status == 0, r.err
        session.send(push.COMMIT)
        result = session.finish()
        assert result.status == 0 and "generation 1" in result.out, result.err
    finally:
        hc.close()


# -- 2. a doas account never makes root write or read through its paths -----

def test_a_doas_account_cannot_aim_the_bootloader_install_at_its_own_paths(fresh):
    ctl = fresh("db1")
    deploy.deploy(ctl, "db1", "stable-default")
    disk = _disk(ctl, "db1")
    program = disk / receiver.PATH.lstrip("/")
    before = program.read_bytes()
    # The account's own "ESP" (its home is /tmp), with the names the old
    # receiver's temporary files had planted as links to the receiver.
    setup = ("mkdir -p /tmp/esp/efi/freebsd && cd /tmp/esp/efi/freebsd && "
             f"ln -sf {receiver.PATH} loader.efi && "
             + " && ".join(f"ln -sf {receiver.PATH} .loader.efi.new.{p} && "
                           f"ln -sf {receiver.PATH} .loader.efi.old.new.{p}"
                           for p in range(2, 400)))
    assert openssh(ctl, "db1", setup, user="deploy").returncode == 0
    for args in (("install-bootloader", "1", "--esp", "/tmp/esp"),
                 ("status", "--esp", "/tmp/esp"),
                 ("plan", "--esp", "/tmp/esp"),
                 ("install-bootloader", "1", "--esp", "/tmp/esp/efi/freebsd")):
        r = _rx(ctl, "db1", *args, user="deploy")
        assert r.returncode == 2 and b"not a directory only root controls" in r.stderr, (args, r)
        assert b"bootloader-efi" not in r.stdout
    assert program.read_bytes() == before
    # A root-owned ESP reached through a symlink is refused as well.
    (disk / "var/lib/fruix/esp-link").symlink_to("/boot")
    r = _rx(ctl, "db1", "status", "--esp", "/var/lib/fruix/esp-link", user="deploy")
    assert r.returncode == 2 and b"not a directory only root controls" in r.stderr
    # The host's own ESP works as before.
    r = _rx(ctl, "db1", "status", "--esp", "/boot/efi", user="deploy")
    assert r.returncode == 0 and b"bootloader-efi " in r.stdout, r.stderr


# -- 3. a slow cache is ended on the host, and the item pushed -------------

class Trickle(http.server.BaseHTTPRequestHandler):
    """A cache that answers every object, then sends a byte now and then."""
    opened = closed = 0
    lock = threading.Lock()

    def do_GET(self):
        with Trickle.lock:
            Trickle.opened += 1
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 20))
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)       # the cache's own pace, not a wait for a result
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with Trickle.lock:
                Trickle.closed += 1

    def log_message(self, *args):
        pass


def test_a_cache_that_trickles_is_ended_on_the_host_and_the_item_pushed(fresh, project):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    text = project.with_name("lab-cache.yaml").read_text()
    slow = project.with_name("lab-slow.yaml")
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    text, n = re.subn(r"(?m)^  cache:\n(    [^\n]*\n)+",
                      f"  cache:\n    url: {url}\n    grace: 2\n    min_rate_kib: 1048576\n", text)
    assert n == 1
    slow.write_text(text)
    try:
        fresh("web2")
        ctl = Controller(slow)
        r = deploy.deploy(ctl, "web2", "stable-default")
        assert r.pulled == 0 and r.items_sent == 4
        slow_notes = [n for n in r.notes if "the cache was too slow" in n]
        assert len(slow_notes) == 4, r.notes
        # Every fetch the host started was ended by the host: the cache saw
        # each connection closed, and no fetching tool is left running.
        assert Trickle.opened >= 4
        deadline = time.monotonic() + 10
        while Trickle.closed < Trickle.opened and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Trickle.closed == Trickle.opened
        ps = openssh(ctl, "web2", "ps -eo comm").stdout.decode().split()
        assert not {"curl", "wget", "fetch"} & set(ps), ps
        ok, lines = deploy.verify(ctl, "web2")
        assert ok, lines
    finally:
        server.shutdown()
        slow.unlink()


# -- 5. bundles are read as plain bytes, and only root names a file --------

def _bundle(ctl_path, host, out, *extra):
    return inv_cmd(ctl_path, "bundle.export", "--host", host, "--out", str(out), *extra,
                   check=True)


def test_import_names_a_file_only_for_root_and_never_a_remote_one(fresh, project, tmp_path):
    ctl = fresh("db1")
    inv_cmd(project, "bootstrap", "--host", "db1", check=True)
    # Through doas: a file on the host is refused, whatever it is.
    for f in ("/etc/shadow", "/var/lib/fruix/fruixops/receiver", "/nonexistent"):
        r = _rx(ctl, "db1", "import", f, user="deploy")
        assert r.returncode == 2 and b"the bundle comes on stdin (import -)" in r.stderr, r
    # Through the restricted key of mon1 too.
    ctl = fresh("mon1")
    r = openssh(ctl, "mon1", "import /etc/shadow")
    assert r.returncode == 2 and b"the bundle comes on stdin" in r.stderr, r
    # Root at the console: "h:bundle" is a file in the current directory,
    # not GNU tar's remote archive on host h.
    ctl = fresh("web2")
    inv_cmd(project, "bootstrap", "--host", "web2", check=True)
    out = tmp_path / "web2.bundle"
    _bundle(project, "web2", out, "--compress", "none")
    assert openssh(ctl, "web2", "cat > /var/lib/fruix/h:bundle",
                   stdin=out.read_bytes()).returncode == 0
    r = openssh(ctl, "web2", f"cd /var/lib/fruix && sh {receiver.PATH} import h:bundle")
    assert r.returncode == 0 and b"generation 1" in r.stdout, r.stderr


def test_an_imported_member_is_read_no_further_than_its_signed_size(fresh, project, tmp_path):
    """The bundle's items carry far more than the signed bytes: the host
    reads each up to its signed size (as a pull), so it fills no disk, and
    what it read is the signed item."""
    ctl = fresh("web2")
    inv_cmd(project, "bootstrap", "--host", "web2", check=True)
    out = tmp_path / "web2.bundle"
    _bundle(project, "web2", out, "--compress", "none")
    padded = tmp_path / "padded.bundle"
    with tarfile.open(out) as src, tarfile.open(padded, "w") as dst:
        for m in src:
            data = src.extractfile(m).read() if m.isreg() else None
            if m.name.endswith(".tar"):
                data += b"\0" * (32 << 20)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    r = openssh(ctl, "web2", f"sh {receiver.PATH} import -", stdin=padded.read_bytes(),
                timeout=120)
    assert r.returncode == 0 and b"landed 4" in r.stdout, r.stderr
    ok, lines = deploy.verify(ctl, "web2")
    assert ok, lines


def test_a_bundle_member_that_is_a_link_is_never_followed(fresh, project):
    ctl = fresh("web2")
    inv_cmd(project, "bootstrap", "--host", "web2", check=True)
    m, data, sig = ctl.make_manifest("web2", "stable-default")
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w") as tar:
        for name, target in (("manifest", "/var/lib/fruix/fruixops/host-name"),
                             ("manifest.sig", "/var/lib/fruix/fruixops/host-name")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        info = tarfile.TarInfo("device")
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info)
    before = host_snapshot(_disk(ctl, "web2"))
    r = openssh(ctl, "web2", f"sh {receiver.PATH} plan", stdin=bundle.getvalue())
    assert r.returncode == 2 and b"the bundle lacks manifest or manifest.sig" in r.stderr, r
    assert host_snapshot(_disk(ctl, "web2")) == before


# -- 7. a stopped import does not burn its bundle ---------------------------

def test_an_import_stopped_before_its_generation_is_recorded_can_run_again(
        fresh, project, tmp_path):
    ctl = fresh("web2")
    inv_cmd(project, "bootstrap", "--host", "web2", check=True)
    out = tmp_path / "web2.bundle"
    _bundle(project, "web2", out, "--compress", "none")
    gens = _disk(ctl, "web2") / "var/lib/fruix/system/generations"
    # The generation cannot be recorded (its directory is a file): the
    # items land, the receiver stops there.
    gens.parent.mkdir(parents=True, exist_ok=True)
    gens.write_text("in the way\n")
    r = openssh(ctl, "web2", f"sh {receiver.PATH} import -", stdin=out.read_bytes())
    assert r.returncode != 0 and b"generations" in r.stderr, r
    assert len([p for p in (_disk(ctl, "web2") / "frx/store").iterdir()
                if not p.name.startswith(".")]) == 4     # landed, not recorded
    gens.unlink()
    r = openssh(ctl, "web2", f"sh {receiver.PATH} import -", stdin=out.read_bytes())
    assert r.returncode == 0 and b"generation 1" in r.stdout, r.stderr
    # Recorded, it is spent, even if last-serial was not written after it.
    (_disk(ctl, "web2") / "var/lib/fruix/fruixops/last-serial").write_text("0\n")
    r = openssh(ctl, "web2", f"sh {receiver.PATH} import -", stdin=out.read_bytes())
    assert r.returncode == 2 and b"replay refused" in r.stderr, r


# -- 8. a controller that goes away leaves no lock -------------------------

def test_a_controller_gone_mid_receive_leaves_no_lock_or_temporary_files(fresh, project):
    ctl = fresh("web2")
    inv_cmd(project, "bootstrap", "--host", "web2", check=True)
    m, data, sig = ctl.make_manifest("web2", "stable-default")
    host = ctl.inventory.host("web2")
    lab = ctl.inventory.path.parent / "../.lab"
    ssh = subprocess.Popen(
        ["ssh", "-i", str(lab / "id_ed25519"), "-p", str(host.var("ssh_port")),
         "-o", f"UserKnownHostsFile={ctl.inventory.settings.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "root@127.0.0.1",
         f"sh {receiver.PATH} receive"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ssh.stdin.write(push._opening(data, sig))
    ssh.stdin.flush()
    assert ssh.stdout.readline().startswith(b"ready ")
    disk = _disk(ctl, "web2")
    assert (disk / "var/lib/fruix/fruixops/lock").is_symlink()
    ssh.kill()                   # the controller is gone: no commit, no reader
    ssh.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            (disk / "var/lib/fruix/fruixops/lock").is_symlink()
            or list((disk / "frx/store").glob(".fruixops-tmp.*"))):
        time.sleep(0.1)
    assert not (disk / "var/lib/fruix/fruixops/lock").is_symlink()
    assert not list((disk / "frx/store").glob(".fruixops-tmp.*"))


# -- 9. one changed store file does not fail every later deploy ------------

def test_a_changed_store_file_sends_the_whole_item_instead_of_failing(fresh):
    ctl = fresh("web3")
    first = deploy.deploy(ctl, "web3", "stable-default")
    disk = _disk(ctl, "web3")
    runtime = disk / next(p for p in first.sent if "runtime" in p).lstrip("/")
    victim = next(p for p in sorted(runtime.rglob("*"))
                  if p.is_file() and not p.is_symlink() and p.stat().st_size > 0)
    mode = victim.stat().st_mode
    victim.chmod(0o644)
    with open(victim, "ab") as f:
        f.write(b"changed")
    victim.chmod(mode)
    second = deploy.deploy(ctl, "web3", "stable-canary")
    refused = [n for n in second.notes if "its delta refused" in n and "runtime" in n]
    assert len(refused) == 1 and "listing does not match" in refused[0], second.notes
    new = disk / next(p for p in second.sent if "runtime" in p).lstrip("/")
    assert (new / victim.relative_to(runtime)).read_bytes() != victim.read_bytes()
    ok, lines = deploy.verify(ctl, "web3")
    assert not ok and [line for line in lines if line.startswith("drift")] == \
        [line for line in lines if line.startswith("drift") and str(runtime.name) in line]


# -- 10. loader.conf.d names are names -------------------------------------

def test_loader_overrides_with_spaces_and_globs_in_their_names(fresh):
    ctl = fresh("web2")
    deploy.deploy(ctl, "web2", "stable-default")
    conf_d = _disk(ctl, "web2") / "boot/loader.conf.d"
    (conf_d / "my kernel.conf").write_text('kernel="other"\n')
    (conf_d / "*.conf").write_text('init_exec="/sbin/init"\n')
    state = deploy.status(ctl, "web2")
    # Before or after fruix.conf in the directory's order, each with its line.
    assert sorted(f.split(": sets ")[0] for f in state.loader_overrides) == [
        "/boot/loader.conf.d/*.conf:1", "/boot/loader.conf.d/my kernel.conf:1"]


# -- 11. gcroots that outlive their generation; control characters ---------

def test_a_gcroot_whose_generation_is_gone_is_removed(fresh):
    ctl = fresh("web2")
    r = deploy.deploy(ctl, "web2", "stable-default")
    roots = _disk(ctl, "web2") / "frx/var/fruix/gcroots"
    # What a gc killed between its two steps leaves.
    (roots / "system-7").symlink_to(r.closure)
    lifecycle.gc(ctl, "web2", keep=3)
    assert not (roots / "system-7").is_symlink()
    assert (roots / "system-1").is_symlink()


def test_a_signed_manifest_with_control_characters_is_refused(fresh, tmp_path):
    ctl = fresh("web2")
    with pytest.raises(Exception, match="control character"):
        offer(ctl, "web2", bootable([]), tmp_path,
              sign_edit=lambda b: b.replace(b"\nbase hostile\n", b"\nbase host\x1b[2Jile\n"))
    assert not list((_disk(ctl, "web2") / "frx/store").iterdir()) or \
        not [p for p in (_disk(ctl, "web2") / "frx/store").iterdir() if not p.name.startswith(".")]

