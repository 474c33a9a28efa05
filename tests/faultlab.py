"""Helpers for the fault-injection tests: an inventory with many distinct
bases (so every trial has a whole closure to send), invariant checks on a lab
host's disk, waiting for a host's lock to be free or stale, and a campaign
of receivers killed at random points."""

import hashlib
import os
import random
import re
import threading
from pathlib import Path

from fruixops.store import distgen
from fruixops.remote.connection import HostConnection
from fruixops.errors import HostError

FAULT_SIZE_MB = 8


def fault_inventory(project, count):
    """inventories/faults.yaml beside the lab inventory: the same hosts plus
    bases fault-00.. over one 8 MB synthetic source (distinct labels, so
    distinct items). Returns its path."""
    dist = project.parent.parent / ".frx" / "dist" / "fault"
    made = distgen.generate(dist, seed="fault", size_mb=FAULT_SIZE_MB)
    sha = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in made.items()}
    bases = ["bases:"]
    for i in range(count):
        bases += [f"  fault-{i:02d}:",
                  f"    version_label: 15.0-FAULT-{i:02d}",
                  "    release: 15.0-STABLE",
                  "    branch: stable/15",
                  "    source:",
                  "      dist:",
                  f"        base: {{path: {made['base']}, sha256: {sha['base']}}}",
                  f"        kernel: {{path: {made['kernel']}, sha256: {sha['kernel']}}}"]
    text = project.read_text().replace("bases:\n", "\n".join(bases) + "\n", 1)
    path = project.with_name("faults.yaml")
    path.write_text(text)
    return path


def listing(item):
    """The receiver's listing of an item tree, computed here independently."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(item):
        rel_dir = os.path.relpath(dirpath, item)
        rel_dir = "." if rel_dir == "." else "./" + rel_dir
        lines.append(f"d - {rel_dir}")
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = f"{rel_dir}/{name}"
            if os.path.islink(full):
                lines.append(f"l {os.readlink(full)} {rel}")
                if name in dirnames:
                    dirnames.remove(name)
            elif name in filenames:
                kind = "x" if os.lstat(full).st_mode & 0o100 else "f"
                lines.append(f"{kind} {hashlib.sha256(Path(full).read_bytes()).hexdigest()} {rel}")
    return "".join(line + "\n" for line in sorted(lines, key=lambda s: s.encode()))


def check_host(disk):
    """The guarantees after any fault: every visible store item is complete
    and matches the listing recorded when it landed; `current` (and every
    generation) names a complete closure. Returns the current generation."""
    store, sums = disk / "frx/store", disk / "frx/var/fruix/items"
    visible = [p for p in store.iterdir() if not p.name.startswith(".")]
    for item in visible:
        recorded = sums / f"{item.name}.sums"
        assert recorded.exists(), f"{item.name} is visible but has no listing"
        assert listing(item) == recorded.read_text(), f"{item.name} does not match its listing"
    system = disk / "var/lib/fruix/system"
    gens = [p for p in (system / "generations").iterdir() if p.name.isdigit()]
    for g in gens:
        closure = os.readlink(g / "closure")
        assert (disk / closure.lstrip("/")).is_dir(), f"generation {g.name}: no closure"
        for line in (g / "manifest").read_text().splitlines():
            if line.startswith("item "):
                path = line.split()[1]
                assert (disk / path.lstrip("/")).is_dir(), f"generation {g.name}: {path} missing"
    current = os.readlink(system / "current")
    assert re.fullmatch(r"generations/\d+", current) and (system / current).is_dir()
    if (disk / "boot/loader.conf.d/fruix.conf").exists():
        loader_default(disk)
    return int(current.split("/")[1])


def loader_vars(path):
    """The name="value" assignments of a loader file, as a dict."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r'\s*([A-Za-z0-9][-A-Za-z0-9_.]*)\s*=\s*"([^"]*)"\s*(#.*)?', line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def generation_loader_vars(disk, n):
    """What the loader must be told to boot generation *n* on this disk."""
    closure = os.readlink(disk / f"var/lib/fruix/system/generations/{n}/closure")
    kernel_item = os.readlink(disk / closure.lstrip("/") / "kernel")
    return {"kernel": f"{kernel_item}/boot/kernel", "fruix.system": closure,
            "fruix.generation": str(n), "init_exec": f"{closure}/boot/init"}


def loader_default(disk):
    """The generation fruix.conf makes the loader boot by default, checked:
    it names exactly that generation's kernel, closure and hand-over, and
    every item of that generation is in the store. Returns its number."""
    conf = loader_vars(disk / "boot/loader.conf.d/fruix.conf")
    n = int(conf["fruix.generation"])
    assert conf == generation_loader_vars(disk, n), f"fruix.conf does not name generation {n}"
    manifest = disk / f"var/lib/fruix/system/generations/{n}/manifest"
    for line in manifest.read_text().splitlines():
        if line.startswith("item "):
            path = line.split()[1]
            assert (disk / path.lstrip("/")).is_dir(), f"default generation {n}: {path} missing"
    assert (disk / conf["kernel"].lstrip("/") / "kernel").is_file()
    return n


def leftovers(disk):
    """Temporary files a killed deploy may leave (hidden, never visible as items)."""
    found = [p.name for p in (disk / "frx/store").iterdir() if p.name.startswith(".")]
    found += [p.name for p in (disk / "var/lib/fruix/system/generations").iterdir()
              if p.name.startswith(".")]
    return found


LOCK_FREE = ("l=$(readlink /var/lib/fruix/fruixops/lock) || exit 0; p=${l#pid=}; p=${p%%,*}; "
             "if kill -0 \"$p\" 2>/dev/null; then exit 1; fi")


def wait_lock_free_or_stale(hc, timeout=20):
    """Wait until no live process holds the host's lock (the receiver of a
    killed deploy finishes its clean-up, or dies leaving a stale lock)."""
    import time
    deadline = time.monotonic() + timeout
    while hc.run(LOCK_FREE).status != 0:
        assert time.monotonic() < deadline, "the host's lock stayed held by a live process"
        time.sleep(0.05)


def kill_campaign(ctl, host, start, pattern, trials, seed):
    """Run start() (an operation that makes the host's receiver work) while
    another connection SIGKILLs the receiver matching *pattern* after a random
    delay; after each, the host must be whole. Returns (killed, completed)."""
    rng = random.Random(seed)
    d = (ctl.inventory.path.parent / "../.lab" / host / "root").resolve()
    killed = completed = 0
    for _ in range(trials):
        delay = rng.uniform(0, 0.4)
        done = {}

        def run():
            try:
                start()
                done["ok"] = True
            except HostError:
                done["ok"] = False
        t = threading.Thread(target=run)
        t.start()
        hc = HostConnection(ctl.inventory.host(host), ctl.inventory.settings.known_hosts).open()
        try:
            r = hc.run(f"sleep {delay:.3f}; pkill -9 -f {pattern!r} && echo killed; exit 0")
            wait_lock_free_or_stale(hc)
        finally:
            hc.close()
        t.join(120)
        assert not t.is_alive()
        killed += "killed" in r.out
        completed += bool(done.get("ok"))
        check_host(d)
        loader_default(d)
    return killed, completed
