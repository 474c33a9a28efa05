"""The bootloader: FreeBSD's loader.efi (on the EFI system partition and in
/boot) and /boot/lua. Unlike kernels it is not per generation -- one loader
boots every generation -- so a deploy never changes it by itself: plan and
deploy say when the base's bootloader differs from the installed one, and
``--install-bootloader`` installs it (the previous copy kept as ``.old``, as
freebsd-update keeps kernel.old)."""

import hashlib
import shlex

from fruixops.errors import HostError

DEFAULT_ESP = "/boot/efi"
PART = "freebsd-native-bootloader-"


def esp_path(host):
    return host.var("esp_path", DEFAULT_ESP)


def item_of(manifest):
    """The bootloader item of a manifest's closure, or None."""
    for it in manifest.items:
        if it.path.name.startswith(PART):
            return it
    return None


def expected(store, item):
    """(sha256 of boot/loader.efi, sha256 of the boot/lua listing) as the host
    would compute them for this bootloader item once installed."""
    efi, lua = None, []
    for line in store.listing(item.path).decode().splitlines():
        kind, value, path = line.split(" ", 2)
        if path == "./boot/loader.efi":
            efi = value
        elif path == "./boot/lua" or path.startswith("./boot/lua/"):
            lua.append(f"{kind} {value} .{path[len('./boot/lua'):]}")
    lua_sha = (hashlib.sha256(("\n".join(sorted(lua)) + "\n").encode()).hexdigest()
               if lua else None)
    return efi, lua_sha


def difference(state, store, manifest):
    """A one-line note when the manifest's bootloader is not the installed
    one (as reported by the host's plan), else None."""
    item = item_of(manifest)
    if item is None:
        return None
    efi, lua = expected(store, item)
    if (efi, lua) == (state.bootloader_efi, state.bootloader_lua):
        return None
    what = "no bootloader is installed" if state.bootloader_efi is None else \
        "the installed bootloader differs from this base's"
    return (f"bootloader: {what} ({item.path.name}); "
            "inv deploy --install-bootloader installs it")


def install(hc, generation):
    """Install generation *generation*'s bootloader on the host."""
    esp = esp_path(hc.host)
    r = hc.run(hc.receiver("install-bootloader", generation, "--esp", esp))
    if r.status != 0:
        raise HostError(hc.name, r.last_error_line())
    if not r.out.strip():
        raise HostError(hc.name, "install-bootloader answered nothing")
    return r.out.strip()


def plan_command(host):
    return f"plan --esp {shlex.quote(esp_path(host))}"
