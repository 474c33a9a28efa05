"""Random /boot states for the loader differential test: seeded, so a
failing state is reproduced by its seed.

A state is a host disk (ROOT/boot, ROOT/frx): FreeBSD-style defaults, the
stock kernel, kernels in the store (one of them not an ELF image), and the
files an administrator or fruixops may leave in /boot -- loader.conf,
loader.conf.local, loader.conf.d entries (hidden names and names merely
ending in "conf" included, created in random order), other conf files and
directories that loader.conf may point at, and nextboot.conf -- written with
every quoting, expansion, escape, comment, CRLF, exec= and module-line form
config.lua accepts or rejects.
"""

import random

from fruixops.lab import LOADER_DEFAULTS

ELF = b"\x7fELF" + b"\0" * 60
STORE = "/frx/store"
KERNELS = {  # store kernel directories: hash -> is an ELF image
    "a1b2c3-freebsd-kernel-15.0": True,
    "d4e5f6-freebsd-kernel-15.0": True,
    "0bad00-freebsd-kernel-15.0": False,
}
CONF_D_NAMES = ["fruix.conf", ".fruix.conf", ".x.conf", "x.conf", "aconf", "zz-local.conf",
                "00-early.conf", "fruix.conf.bak", "fruix.conf~", "conf", "Xconf"]


def kernel_values():
    vals = ["kernel", "kernel.old", "kernel.gone", "/boot/kfile", "/boot/kernel", "/frx/store/nope/boot/kernel"]
    vals += [f"{STORE}/{h}/boot/kernel" for h in KERNELS]
    return vals


def system_values():
    return [f"{STORE}/{h[:6]}-fruix-system-{g}" for h in ("aa11bb", "cc22dd") for g in (1, 2)]


def lay_out_disk(root):
    """The files that are always there: defaults, kernels, the store."""
    boot = root / "boot"
    (boot / "defaults").mkdir(parents=True)
    (boot / "defaults/loader.conf").write_text(LOADER_DEFAULTS)
    for d in ("kernel", "kernel.old"):
        (boot / d).mkdir()
        (boot / d / "kernel").write_bytes(ELF)
    (boot / "kfile").write_bytes(ELF)          # a kernel that is a file, not a directory
    for h, elf in KERNELS.items():
        k = root / "frx/store" / h / "boot/kernel"
        k.mkdir(parents=True)
        (k / "kernel").write_bytes(ELF if elf else b"#!/bin/sh\nnot a kernel\n")
    (root / "frx/store").mkdir(parents=True, exist_ok=True)
    return boot


class LineMaker:
    def __init__(self, rng):
        self.rng = rng

    def value(self, key):
        r = self.rng
        if key == "kernel":
            return r.choice(kernel_values())
        if key == "bootfile":
            return r.choice(["kernel", "kernel;kernel.debug", "/boot/kernel/kernel", "nokernel", "kernel.gone"])
        if key == "fruix.system":
            return r.choice(system_values())
        if key == "init_exec":
            return r.choice(system_values()) + "/init"
        if key == "fruix.generation":
            return str(r.choice([1, 2, 3, 7, 12]))
        return r.choice(["YES", "NO", "yes", "1", "word", "a b"])

    def quoted(self, value):
        """VALUE written the ways people write it, valid or not."""
        r = self.rng
        form = r.choices(["dq", "word", "sq", "expand", "brace", "escape", "bad"],
                         [40, 12, 8, 10, 10, 10, 10])[0]
        if form == "dq":
            return f'"{value}"'
        if form == "word":
            return value
        if form == "sq":
            return f"'{value}'"
        if form in ("expand", "brace") and value.startswith(STORE + "/"):
            ref = "$fruix.store" if form == "expand" else "${fruix.store}"
            return f'"{ref}{value[len(STORE):]}"'
        if form in ("expand", "brace"):
            return f'"{r.choice(["$unset_var", "${unset.var}", "$bootfile"])}{value}"'
        if form == "escape":
            i = r.randrange(len(value) + 1)
            c = r.choice(["\\", "\\\\", "\\$"]) if r.random() < 0.3 else "\\"
            return '"' + value[:i] + c + value[i:] + '"'
        return r.choice([f'"{value}\\"', f'"{value}$"', f'"${{{value}"', f'"$/{value}"',
                         f'"{value}', f'"{value}" junk', f'"{value}"x', f'"a"b"{value}"'])

    def assignment(self, key, value=None):
        r = self.rng
        value = self.value(key) if value is None else value
        sp1 = r.choice(["", "", " ", "\t", "  "])
        eq = r.choice(["=", "=", " = ", "=\t", " ="])
        tail = r.choice(["", "", "", " # a comment", "\t#", "  ", "# c=\"x\""])
        return f"{sp1}{key}{eq}{self.quoted(value)}{tail}"

    def line(self, conf_keys=True):
        r = self.rng
        kind = r.choices(["fruix", "kernel", "bootfile", "store", "comment", "blank", "malformed",
                          "exec", "module", "nextboot_enable", "conf", "other"],
                         [30, 14, 3, 6, 6, 4, 4, 5, 5, 3, 4 if conf_keys else 0, 3])[0]
        if kind == "fruix":
            return self.assignment(r.choice(["fruix.generation", "fruix.system", "init_exec"]))
        if kind == "kernel":
            return self.assignment("kernel")
        if kind == "bootfile":
            return self.assignment("bootfile")
        if kind == "store":
            return self.assignment("fruix.store", r.choice([STORE, STORE, "/frx/elsewhere"]))
        if kind == "comment":
            return r.choice(["# fruix.generation=\"99\"", "   # kernel=\"kernel.old\"", "#", "#exec=\"x\""])
        if kind == "blank":
            return r.choice(["", "   ", "\t"])
        if kind == "malformed":
            return r.choice(["this is not an assignment", "kernel", "=\"x\"", "fruix.generation=",
                             "fruix.generation =\"4\" \"5\"", "_x=\"1\"", "-y=\"2\"", "fruix generation=\"4\""])
        if kind == "exec":
            return r.choice([f'exec="set fruix.generation={self.value("fruix.generation")}"',
                             'exec="unset init_exec"', 'exec="echo Loading fruix"',
                             f'exec="set kernel={r.choice(kernel_values())}"', 'exec="include /boot/x"',
                             "exec=word", 'exec="set"'])
        if kind == "module":
            name = r.choice(["zfs", "if_em", "fruix", "acpi_video", "cpu_microcode", "fruix.generation"])
            suffix = r.choice(["_load", "_name", "_type", "_flags"])
            val = r.choice(["YES", "yes", "no", "$kernel", "/boot/x", "word"])
            return f"{name}{suffix}={self.quoted(val) if val != '$kernel' else chr(34) + val + chr(34)}"
        if kind == "nextboot_enable":
            return self.assignment("nextboot_enable", r.choice(["YES", "NO", "NO", "no"]))
        if kind == "conf":
            key = r.choice(["loader_conf_dirs", "loader_conf_files", "local_loader_conf_files"])
            vals = {"loader_conf_dirs": ["/boot/loader.conf.d", "/boot/other.d", "",
                                         "/boot/loader.conf.d /boot/other.d", "/boot/missing.d"],
                    "loader_conf_files": ["/boot/extra.conf", "/boot/loader.conf.local", "",
                                          "/boot/extra.conf /boot/loader.conf.d/fruix.conf"],
                    "local_loader_conf_files": ["/boot/loader.conf.local", "/boot/extra.conf", ""]}
            return self.assignment(key, r.choice(vals[key]))
        return self.assignment(r.choice(["kernel_options", "boot_verbose", "autoboot_delay"]))

    def text(self, n=None, conf_keys=True, first=None):
        r = self.rng
        lines = [self.line(conf_keys) for _ in range(r.randint(0, 5) if n is None else n)]
        if first is not None:
            lines.insert(0, first)
        eol = "\r\n" if r.random() < 0.15 else "\n"
        body = eol.join(lines)
        if lines and r.random() < 0.9:
            body += eol
        return body


NEXTBOOT_FIRST = ['nextboot_enable="YES"', 'nextboot_enable="NO"', 'nextboot_enable="NO" ',
                  "nextboot_enable=YES", 'nextboot_enable="yes"', "# one-shot", ' nextboot_enable="NO"',
                  'nextboot_enable="NO"\r', 'kernel="kernel.old"', "nextboot_enable=NO"]


def random_state(root, seed):
    """Write one random host disk under ROOT (deterministic in SEED)."""
    rng = random.Random(seed)
    lm = LineMaker(rng)
    boot = lay_out_disk(root)

    def maybe(p, path, **kw):
        if rng.random() < p:
            path.write_bytes(lm.text(**kw).encode())

    maybe(0.8, boot / "loader.conf")
    maybe(0.35, boot / "loader.conf.local")
    maybe(0.2, boot / "extra.conf")
    for d, p in (("loader.conf.d", 0.9), ("other.d", 0.2)):
        if rng.random() < p:
            (boot / d).mkdir()
            names = rng.sample(CONF_D_NAMES, rng.randint(0, 4))
            for name in names:               # created in random order: on-disk order varies
                if rng.random() < 0.05:
                    (boot / d / name).mkdir()
                else:
                    (boot / d / name).write_bytes(lm.text(n=rng.randint(1, 4)).encode())
    if rng.random() < 0.45:
        first = rng.choice(NEXTBOOT_FIRST)
        (boot / "nextboot.conf").write_bytes(lm.text(n=rng.randint(1, 3), conf_keys=False, first=first).encode())
    return root
