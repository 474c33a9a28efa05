"""The bench's shared harness: the work directory (.bench/, git-ignored),
the inventories every figure family uses, the lab hosts' handling (bare,
set aside, ssh), logging and medians. The figure families are modules of
their own (cold.py, upgrades.py, fleets.py, model.py); run.py runs them all.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
sys.path.insert(0, str(ROOT))

from fruixops.store import distgen  # noqa: E402
from fruixops.inventory import model as inventory  # noqa: E402
from fruixops.lab import Lab  # noqa: E402

PORT_SHIFT = 8000     # lab ports 30101-30180: no other lab on this machine uses them
TMPFS_MB = 3072
# Figure 1r: real binaries, headers, man pages and locales from this machine
# (about 700 MiB in 36,000 files on Debian), not a generated tree.
REAL_DIRS = ("/usr/bin", "/usr/share/man", "/usr/include", "/usr/share/locale",
             "/usr/lib/python3")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def real_tree(dest):
    """A staging tree made of real files: REAL_DIRS copied under *dest*
    (regular files, directories and symlinks only, as a store item holds)."""
    for d in REAL_DIRS:
        if not os.path.isdir(d):
            continue
        target = dest / d.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--no-preserve=ownership", d, str(target)], check=True)
    subprocess.run(["find", str(dest), "!", "-type", "f", "!", "-type", "d", "!", "-type", "l",
                    "-delete"], check=True)
    subprocess.run(["chmod", "-R", "u+rw,go-w,-s", str(dest)], check=True)
    # A base needs a kernel the loader can boot: the smallest synthetic one
    # (4 MiB, some 50 files: the rest of the tree is real).
    distgen.generate_tree(dest, seed="bench-real", size_mb=4)
    return dest


def one_percent(src, dest):
    """*dest*: a copy of the tree *src* (hard links) in which 1% of the
    non-empty regular files are rewritten as a patch release would: their
    bytes changed here and there. Returns the changed files (relative)."""
    subprocess.run(["cp", "-al", str(src), str(dest)], check=True)
    files = sorted(p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.stat().st_size > 0)
    changed = files[::100]
    for p in changed:
        data = bytearray(p.read_bytes())
        for i in range(0, len(data), 4096):
            data[i] ^= 0x5a
        mode = p.stat().st_mode
        p.unlink()                   # break the hard link to the source tree
        p.write_bytes(bytes(data))
        p.chmod(mode)
    return [str(p.relative_to(dest)) for p in changed]


def setup(sizes, real=False):
    from tests.conftest import stop_stray_supervisors  # the same clean-up the tests use
    stop_stray_supervisors(BENCH)
    remove_stray_links()
    # Everything from an earlier run goes but the controller's store: its
    # items are content-addressed (the same trees give the same items), and
    # the real base takes minutes to compress at level 19. No figure times a
    # build but figure 7, which uses a cold hash cache of its own.
    if BENCH.exists():
        for old in BENCH.iterdir():
            if old.name != ".frx":
                subprocess.run(["chmod", "-R", "u+w", str(old)], check=False)
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    (BENCH / "inventories").mkdir(parents=True)
    # The web tier's files come from templates beside the inventory.
    shutil.copytree(ROOT / "inventories/templates", BENCH / "inventories/templates")
    (BENCH / "aside").mkdir()
    (BENCH / "keys").mkdir()
    from tests.conftest import lab_inventory_text
    text = lab_inventory_text(PORT_SHIFT)            # no cache: every figure but 6c pushes
    bases = ["bases:"]
    for name, mb in sizes.items():
        t0 = time.monotonic()
        tree = distgen.generate_tree(BENCH / "trees" / name, seed=f"bench-{name}", size_mb=mb)
        log(f"generated a {mb} MiB tree for {name} in {time.monotonic() - t0:.1f}s")
        bases += [f"  {name}:", f"    version_label: 15.0-BENCH-{name}", "    release: 15.0-STABLE",
                  "    branch: stable/15", f"    source: {{tree: {{path: {tree}}}}}"]
    if "fleet" in sizes:
        # Figure 6c's upgrade: the same tree under another label (every item
        # new, every file already on the hosts).
        bases += ["  fleet-p1:", "    version_label: 15.0-BENCH-fleet-p1",
                  "    release: 15.0-STABLE", "    branch: stable/15",
                  f"    source: {{tree: {{path: {BENCH / 'trees' / 'fleet'}}}}}"]
    if real:
        t0 = time.monotonic()
        tree = real_tree(BENCH / "trees" / "real")
        log(f"copied real files for figure 1r in {time.monotonic() - t0:.1f}s")
        bases += ["  real:", "    version_label: 15.0-BENCH-real", "    release: 15.0-STABLE",
                  "    branch: stable/15", f"    source: {{tree: {{path: {tree}}}}}"]
    if real:
        # Figure 8: upgrades of the real tree. The same source under another
        # label, and a copy with 1% of its files changed (hard-linked, the
        # changed ones rewritten).
        changed = one_percent(tree, BENCH / "trees" / "real-1pct")
        (BENCH / "changed-files.txt").write_text("".join(f"{p}\n" for p in changed))
        for name, path in (("real-p1", tree), ("real-1pct", BENCH / "trees" / "real-1pct")):
            bases += [f"  {name}:", f"    version_label: 15.0-BENCH-{name}",
                      "    release: 15.0-STABLE", "    branch: stable/15",
                      f"    source: {{tree: {{path: {path}}}}}"]
    text = text.replace("bases:\n", "\n".join(bases) + "\n", 1)
    # web1 gets a tmpfs as /frx, for figure 1b: the copy without the disk.
    # Its loader would not read a kernel from there: boot_fs_check off, as
    # for a host whose loader does (no figure boots it).
    text = text.replace("web1: {ssh_port:", f"web1: {{lab_frx_tmpfs_mb: {TMPFS_MB}, "
                        "boot_fs_check: false, ssh_port:")
    inv = BENCH / "inventories/bench.yaml"
    inv.write_text(text)
    # The upgrades are built at zstd level 3 (its whole archives are never
    # sent: the host gets deltas, made at that level too): the figure is then
    # conservative, and the bench does not compress 700 MiB at level 19 twice more.
    (BENCH / "inventories/bench-upgrade.yaml").write_text(
        text.replace("fruixops:\n", "fruixops:\n  zstd_level: 3\n", 1))
    # The same fleet, web2 with one more service: only its system item changes.
    (BENCH / "inventories/bench-svc.yaml").write_text(
        text.replace("web2: {ssh_port:", "web2: {services: [sshd, ntpd], ssh_port:"))
    (BENCH / "inventories/bench-svc2.yaml").write_text(
        text.replace("web2: {ssh_port:", "web2: {services: [sshd, ntpd, cron], ssh_port:"))
    # Figure 6c: the same fleet with the lab's cache (nginx) to pull from.
    cached = lab_inventory_text(PORT_SHIFT, cache=True)
    cache_block = cached[cached.index("  # The fleet's item cache"):cached.index("\nbases:")]
    (BENCH / "inventories/bench-cache.yaml").write_text(
        text.replace("\nbases:", "\n" + cache_block + "\nbases:", 1))
    return inv


def remove_stray_links():
    """The shaped links an interrupted run left: each host's delay line (by
    its pid file), its namespace, and the shared IFB device."""
    from fruixops.lab import link
    for pidfile in (BENCH / ".lab").glob("*/link.pid"):
        try:
            pid = int(pidfile.read_text())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"fruixops.lab.delayline" in argv:
                os.kill(pid, 15)
                subprocess.run(["ip", "netns", "del", argv[argv.index(b"fruixops.lab.delayline") + 1]],
                               capture_output=True)
        except (OSError, ValueError):
            pass
        pidfile.unlink()
    subprocess.run(["ip", "link", "del", link.SHARED], capture_output=True)


def baseline_items(ctl, base, items):
    """The items the baseline copies: the same as fruixops sends, unpacked as
    trees (once per base)."""
    items_dir = BENCH / "items" / base
    if not items_dir.exists():
        for it in items:
            d = items_dir / it.path.base
            d.mkdir(parents=True)
            with tarfile.open(ctl.builder.store.archive(it.path)) as tar:
                tar.extractall(d, filter="tar")
    return items_dir


def median(xs):
    return statistics.median(xs)


class Harness:
    def __init__(self, inv, runs):
        self.inv_path, self.runs = inv, runs
        self.cold_runs = max(runs, 5) if runs > 1 else 1
        self.inv = inventory.load(inv)
        self.lab = Lab(self.inv)
        self.results = {}

    def host(self, name):
        return self.inv.host(name)

    def bare(self, *names):
        hosts = [self.host(n) for n in names]
        self.lab.reset(hosts)
        self.lab.up(hosts)

    def set_aside(self, name):
        """Make *name* bare without deleting anything yet: its disk is moved
        aside (and deleted by cleanup()). On ext4, files created within seconds
        of a mass delete in the same block group are slow and erratic to
        allocate (perf: the kernel's `recently_deleted` check, over 40% of
        tar's samples), which would measure this machine's deletes, not the copy."""
        host = self.host(name)
        self.lab.down([host])
        disk = self.lab.disk(name)
        if disk.exists():
            disk.rename(BENCH / "aside" / f"{name}-{time.monotonic_ns()}")
        self.lab.up([host])

    def cleanup(self):
        aside = BENCH / "aside"
        subprocess.run(["chmod", "-R", "u+w", str(aside)], check=False)
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()

    def ssh(self, name, command, stdin=None):
        h = self.host(name)
        args = ["ssh", "-o", f"UserKnownHostsFile={self.inv.settings.known_hosts}",
                "-o", "BatchMode=yes", "-i", h.var("ssh_key"), "-p", str(h.var("ssh_port")),
                f"root@{h.ssh_host}", command]
        return subprocess.run(args, stdin=stdin, capture_output=True, check=True)

def _cpu_s():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fleet_inventory(name, n, port0, host_vars=lambda i: {}, cache=None):
    """.bench/inventories/*name*: the bench inventory's settings and bases
    with *n* plain lab hosts (sshd only) f01, f02, ... on ports port0 + i;
    *host_vars(i)* adds to host i's variables; *cache* ({url, upload}) names
    the fleet's cache."""
    import yaml
    doc = yaml.safe_load((BENCH / "inventories/bench.yaml").read_text())
    doc["fruixops"].pop("cache", None)
    if cache:
        doc["fruixops"]["cache"] = cache
    plain = {k: v for k, v in doc["all"]["vars"].items()}
    plain["services"] = ["sshd"]
    doc["all"] = {"vars": plain, "hosts": {
        f"f{i + 1:02d}": {"ssh_port": port0 + i, **host_vars(i)} for i in range(n)}}
    path = BENCH / "inventories" / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
