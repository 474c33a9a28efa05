"""The lab's loader model against FreeBSD's own loader code.

`../shared/freebsd-oracle/harness.lua` runs FreeBSD's stand/lua/config.lua,
unmodified, on a host's disk; `lab-loader.sh` beside it runs the lab's own
model (fruixops/lab/loader.sh) on a scratch copy of the same /boot, the way
the lab's boot.sh runs it. `judge` asks both what the next boot loads.

loader.conf.d is read in on-disk order, which no one can know from outside.
The oracle is run with the directory listed sorted and reversed: when both
answers agree, the state does not depend on the order and the lab must give
that answer. When they differ the state is *order-dependent*; the lab reads
the directory in its own on-disk order (readdir's, as `ls -f` lists it), so
it must then give the answer the oracle gives reading the very directory the
lab read in that same on-disk order (`--dir-order fs` on the lab's copy).
"""

import os
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Beside the checkout, as CI has it; FRUIXOPS_FREEBSD_ORACLE names another place.
ORACLE = Path(os.environ.get("FRUIXOPS_FREEBSD_ORACLE") or ROOT.parent / "shared" / "freebsd-oracle")
LUA = "lua5.4"
# What both sides are asked: does a kernel load, which file (kenv kernelname),
# and what the booted system will find in its kernel environment.
KEYS = ("boots", "kernel", "kernelname", "init_exec", "fruix.system", "fruix.generation")
ELF = b"\x7fELF" + b"\0" * 60


def require_oracle():
    """The oracle's directory, or a failure that says where it was looked for."""
    if not (ORACLE / "harness.lua").is_file() or not (ORACLE / "lab-loader.sh").is_file():
        raise AssertionError(
            f"FreeBSD's loader oracle is missing: expected {ORACLE}/harness.lua and lab-loader.sh "
            "(the tests run it from ../shared/freebsd-oracle beside the checkout, or from "
            "$FRUIXOPS_FREEBSD_ORACLE)")
    return ORACLE


def oracle(root, order, boot_dir=None):
    """What FreeBSD's config.lua boots from ROOT, loader.conf.d listed in ORDER."""
    cmd = [LUA, str(ORACLE / "harness.lua"), "--json", "--dir-order", order]
    if boot_dir is not None:
        cmd += ["--boot-dir", str(boot_dir)]
    proc = subprocess.run(cmd + [str(root)], capture_output=True, text=True, timeout=30)
    if proc.returncode not in (0, 3):
        raise AssertionError(f"oracle failed on {root}: {proc.stderr}")
    j = json.loads(proc.stdout)
    v = j["verdict"]
    view = {"boots": bool(v.get("boots")), "kernel": v.get("kernel"), "kernelname": v.get("kernel_file"),
            "init_exec": v.get("init_exec"), "fruix.system": v.get("fruix.system"),
            "fruix.generation": v.get("fruix.generation")}
    return view, j


def lab(root, out):
    """What the lab's loader.sh boots from ROOT (run by lab-loader.sh on a copy in OUT)."""
    proc = subprocess.run(["sh", str(ORACLE / "lab-loader.sh"), str(ROOT), str(root), str(out)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"lab-loader.sh failed on {root}: {proc.stderr}")
    status, kenv, messages, sect = None, {}, [], None
    for line in proc.stdout.splitlines():
        if line.startswith("status="):
            status = int(line[7:])
        elif line in ("kenv:", "messages:"):
            sect = line[:-1]
        elif line.startswith("nextboot_after="):
            sect = None
        elif sect == "kenv" and line.startswith("  "):
            k, _, v = line[2:].partition("=")
            kenv[k] = v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
        elif sect == "messages":
            messages.append(line.strip())
    view = {"boots": status == 0, "kernel": kenv.get("kernel"), "kernelname": kenv.get("kernelname"),
            "init_exec": kenv.get("init_exec"), "fruix.system": kenv.get("fruix.system"),
            "fruix.generation": kenv.get("fruix.generation")}
    return view, kenv, messages


@dataclass
class Judgement:
    root: Path
    oracle: dict                 # the oracle's answer the lab is held to
    lab: dict
    order_dependent: bool
    sorted_view: dict
    reverse_view: dict
    messages: list = field(default_factory=list)

    @property
    def differs(self):
        return [k for k in KEYS if self.oracle[k] != self.lab[k]]

    def explain(self):
        lines = [f"{self.root}: lab and FreeBSD's loader disagree on {', '.join(self.differs)}"
                 + (" (order-dependent state: held to the oracle in the lab's on-disk order)"
                    if self.order_dependent else "")]
        for k in KEYS:
            lines.append(f"  {k:18} oracle={self.oracle[k]!r:50} lab={self.lab[k]!r}")
        for f in sorted((self.root / "boot").rglob("*")):
            if f.is_file() and f.name != "kernel" and not f.read_bytes().startswith(b"\x7fELF"):
                lines.append(f"  --- {f.relative_to(self.root)}: {f.read_bytes()!r}")
        lines += ["  lab: " + m for m in self.messages]
        return "\n".join(lines)


def judge(root, work):
    """Both answers for the host disk ROOT (ROOT/boot, ROOT/frx); WORK is scratch."""
    sorted_view, _ = oracle(root, "sorted")
    reverse_view, _ = oracle(root, "reverse")
    lab_view, _, messages = lab(root, work)
    dependent = sorted_view != reverse_view
    held_to = sorted_view
    if dependent:
        # The lab read its copy's loader.conf.d in that copy's on-disk order:
        # ask the oracle about the same directory, with nextboot.conf as it
        # was before the lab consumed it.
        nb, copy_nb = root / "boot/nextboot.conf", work / "boot/nextboot.conf"
        if nb.is_file():
            copy_nb.write_bytes(nb.read_bytes())
        held_to, _ = oracle(root, "fs", boot_dir=work / "boot")
    return Judgement(root, held_to, lab_view, dependent, sorted_view, reverse_view, messages)
