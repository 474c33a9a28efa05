"""The controller's own inputs, as an attacker or a typo would write them:
each refused when the inventory loads with one line naming file:line:column
(exit 2 from the command line), never a traceback, never minutes of CPU —
and the replies parsers never raise anything but their one-line error."""

import json
import textwrap
import time

import pytest
from hypothesis import given, settings, strategies as st

from conftest import inv_cmd
from fruixops.inventory import model as inventory
from fruixops.errors import UserError


def write(tmp_path, text, name="inv.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- power_cycle_command --------------------------------------------------------

@pytest.mark.parametrize("command,message", [
    ("ipmitool -H {host power cycle", r"expected '\}' before end of string"),
    ("awk '{print}' /dev/null; ipmitool -H {host} power cycle", r"unknown placeholder \{print\}"),
    ("ipmitool -H {host!r} power cycle", r"unknown placeholder \{host!r\}"),
    ("ipmitool -H {0} power cycle", r"unknown placeholder \{0\}"),
    ("xe vm-reboot vm={host.__class__} force=true", r"unknown placeholder"),
    ("echo }", r"Single '\}'"),
])
def test_power_cycle_placeholders_are_checked_when_the_inventory_loads(tmp_path, command,
                                                                         message):
    """A brace the recovery path would choke on is refused at load, where the
    host is still up, not when a failed trial left it halted."""
    path = write(tmp_path, f"""\
        all:
          hosts:
            web1:
              power_cycle_command: "{command}"
        """)
    with pytest.raises(UserError, match=message) as err:
        inventory.load(path)
    assert str(err.value).startswith(f"{path}:4:")


def test_power_cycle_braces_are_written_doubled(tmp_path):
    from fruixops.rollout.deploy import power_cycle_line
    path = write(tmp_path, """\
        all:
          hosts:
            web1:
              power_cycle_command: "awk 'BEGIN {{ exit 0 }}' && ipmitool -H {host} power cycle"
        """)
    host = inventory.load(path).host("web1")
    line = power_cycle_line(host.var("power_cycle_command"), host.name, path)
    assert line == "awk 'BEGIN { exit 0 }' && ipmitool -H web1 power cycle"


# -- host names and addresses -----------------------------------------------------

def test_a_240_character_host_name_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, f"""\
        all:
          hosts:
            {"a" * 240}: {{}}
        """)
    r = inv_cmd(path, "status", "--limit", "all")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
    assert f"{path}:3:5: host name aaaa" in r.stderr and "240 characters" in r.stderr


@pytest.mark.parametrize("address", ["a" * 64 + ".example.org", "web..example.org",
                                     "root@evil.example.org:2222", "web1.example.org -oProxy=x",
                                     "x" * 254])
def test_an_ssh_host_that_is_no_host_name_fails_that_host_with_one_line(tmp_path, address):
    """Ansible loads any ansible_host; connecting to it is refused before any
    resolver or Fabric's "user@host:port" splitting sees it."""
    path = write(tmp_path, f"""\
        all:
          hosts:
            web1: {{ssh_host: "{address}"}}
            web2: {{ssh_host: 127.0.0.1, ssh_port: 9, connect_timeout: 2}}
        """)
    r = inv_cmd(path, "status", "--limit", "all", "--json")
    assert "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("fruixops: web1: ")] == [
        ln for ln in r.stderr.splitlines() if "web1" in ln]
    assert "is neither a DNS name" in r.stderr
    hosts = {h["host"]: h for h in json.loads(r.stdout)["hosts"]}
    assert hosts["web1"]["status"] == "failed" and hosts["web2"]["status"] == "unreachable"


def test_host_names_that_fit_are_accepted(tmp_path):
    path = write(tmp_path, f"""\
        all:
          hosts:
            {"w" * 63}.example.org: {{}}
            web-2: {{ssh_host: "::1"}}
            web3: {{ssh_host: 192.0.2.7}}
        """)
    assert len(inventory.load(path).hosts) == 3


# -- ports ---------------------------------------------------------------------------
# Already refused by the inventory code as merged (issue 12); kept here so
# that it stays so.

@pytest.mark.parametrize("text,name", [
    ("all:\n  hosts:\n    web1: {ssh_port: 70000}\n", "inv.yaml"),
    ("all:\n  hosts:\n    web1: {ssh_port: 0}\n", "inv.yaml"),
    ("all:\n  hosts:\n    web1: {ansible_port: '70000'}\n", "inv.yaml"),
    ("all:\n  hosts:\n    'web1:70000': {}\n", "inv.yaml"),
    ("[web]\nweb1 ansible_port=70000\n", "inv.ini"),
    ("[web]\nweb1:70000\n", "inv.ini"),
])
def test_ports_out_of_range_are_refused(tmp_path, text, name):
    path = write(tmp_path, text, name)
    with pytest.raises(UserError, match=r"port number \(1-65535\)") as err:
        inventory.load(path)
    assert str(err.value).startswith(f"{path}:")


# -- limits ---------------------------------------------------------------------------

@pytest.mark.parametrize("var", ["connect_timeout", "command_timeout", "query_timeout",
                                 "reply_limit_mib"])
def test_exchange_limits_are_positive_numbers(tmp_path, var):
    path = write(tmp_path, f"all:\n  hosts:\n    web1: {{{var}: 0}}\n")
    with pytest.raises(UserError, match=f"{var} must be at least 1"):
        inventory.load(path)
    path = write(tmp_path, f"all:\n  hosts:\n    web1: {{{var}: soon}}\n")
    with pytest.raises(UserError, match=f"'{var}' must be an integer"):
        inventory.load(path)


# -- YAML aliases ------------------------------------------------------------------------

def _bomb(levels):
    lines = ["all:", "  vars:", '    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol",'
             ' "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    lines += ["  hosts:", "    web1: {}", ""]
    return "\n".join(lines)


@pytest.mark.parametrize("name", ["inv.yaml", "group_vars/all.yaml"])
def test_an_alias_bomb_is_refused_before_it_expands(tmp_path, name):
    """9^8 = 43 million values in 700 bytes: refused at once, with where."""
    if name == "inv.yaml":
        path = write(tmp_path, _bomb(8))
    else:
        (tmp_path / "group_vars").mkdir()
        write(tmp_path, _bomb(8).split("  hosts:")[0].replace("all:\n  vars:\n", "")
              .replace("\n    ", "\n").lstrip(), name)
        path = write(tmp_path, "all:\n  hosts:\n    web1: {}\n")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"aliases expand to more than 1,000,000 values") as err:
        inventory.load(path)
    assert time.monotonic() - start < 2
    assert ":" in str(err.value).split(" ")[0]          # file:line:column


def test_aliases_within_reason_still_work(tmp_path):
    path = write(tmp_path, _bomb(3))            # 9^3 values
    assert len(inventory.load(path).host("web1").var("l2")) == 9


# -- the parsers of host replies -----------------------------------------------------------

REPLY_LINES = st.lists(st.one_of(
    st.sampled_from(["generation 1 closure=/frx/store/" + "a" * 64 + "-fruix-system-web1",
                     "generation 2 closure=/frx/store/" + "a" * 64 + "-x received=9" + "9" * 17,
                     "current 3", "booted ", "boottime 1.2", "missing /frx/store/x", "zstd yes",
                     "delete-item /frx/store/" + "b" * 64 + "-x 12", "freed 12",
                     "keep-generation 2 booted", "ok /frx/store/x", "checked 3"]),
    st.builds(lambda k, v: f"{k} {v}",
              st.sampled_from(["generation", "current", "rollback", "booted", "boottime",
                               "missing", "zstd", "bootloader-efi", "default", "last-serial",
                               "delete-item", "delete-generation", "keep-generation", "freed",
                               "ok", "drift", "checked"]),
              st.text(max_size=40)),
    st.text(max_size=60)), max_size=8).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(REPLY_LINES)
def test_reply_parsers_never_crash(text):
    """Whatever a host answers: parsed, or one MalformedReply."""
    from fruixops.rollout import deploy
    from fruixops.remote import hoststate
    from fruixops.rollout import lifecycle
    from fruixops.remote.hostreply import MalformedReply
    for parse in (lambda t: hoststate.parse(t, "web1"),
                  lambda t: lifecycle._gc_report("web1", t, False),
                  lambda t: deploy._verify_report("web1", t)):
        try:
            parse(text)
        except MalformedReply as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("booted,generation,unknown", [
    ("/frx/store/" + "a" * 64 + "-fruix-system-web1/", "1",
     "kenv fruix.system is '/frx/store/" + "a" * 64 + "-fruix-system-web1/'"),
    ("/tmp/x\x1b[2J", "1", "kenv fruix.system is '/tmp/x\\x1b[2J'"),
    ("/frx/store/" + "a" * 64 + "-fruix-system-web1", "1; reboot",
     "kenv fruix.generation is '1; reboot'"),
])
def test_junk_in_what_kenv_says_booted_is_unknown_not_malformed(booted, generation, unknown):
    """kenv's fruix.system and fruix.generation come from loader files root
    may edit by hand: junk there makes what booted unknown (shown escaped),
    never the host "compromised"."""
    from fruixops.remote import hoststate
    state = hoststate.parse(f"booted-generation {generation}\nbooted {booted}\n", "web1")
    assert state.booted_unknown == unknown
    ref = state.booted_ref()
    assert ref["unknown"] == unknown
    assert ref["closure"] is None or generation != "1"


_SYS = "/frx/store/" + "a" * 64 + "-fruix-system-web1"
_KERNEL = "/frx/store/" + "b" * 64 + "-freebsd-native-kernel-15.0-STABLE/boot/kernel/kernel"


@pytest.mark.parametrize("kernelname,kernel,mismatch", [
    (_KERNEL, _KERNEL, None),
    ("/boot/kernel/kernel", "/boot/kernel/kernel",
     f"the loader loaded kernel /boot/kernel/kernel, not generation 1's ({_KERNEL})"),
    ("", None, None),                       # no kernelname (an older loader): unknown
    ("/boot/kernel/kernel\x1b[2J", None, None),   # junk: unknown, shown escaped
])
def test_the_loaded_kernel_is_compared_with_the_booted_generations(kernelname, kernel, mismatch):
    """kenv kernelname against the kernel file the booted generation loads:
    a mismatch is one line; no kernelname, or junk in it, is unknown, never
    a mismatch and never a malformed reply."""
    from fruixops.remote import hoststate
    state = hoststate.parse(f"booted-generation 1\nbooted {_SYS}\nbooted-kernel {kernelname}\n"
                            f"generation 1 closure={_SYS} kernel={_KERNEL} size=1\n", "web1")
    assert (state.booted_kernel, state.kernel_mismatch()) == (kernel, mismatch)
    ref = state.booted_ref()
    assert (ref["kernel"], ref["kernel_expected"], ref["kernel_mismatch"]) == (
        kernel, _KERNEL, mismatch)
    if "\x1b" in kernelname:
        assert ref["unknown"] == "kenv kernelname is '/boot/kernel/kernel\\x1b[2J'"


def test_loader_override_and_boot_fs_lines_parse_strictly():
    from fruixops.remote import hoststate
    from fruixops.remote.hostreply import MalformedReply
    state = hoststate.parse("loader-override /boot/loader.conf:1: sets loader_conf_dirs=\"x\"\n"
                            "boot-fs differs 64768 38\ntrial 3\n", "web1")
    assert state.loader_overrides == ['/boot/loader.conf:1: sets loader_conf_dirs="x"']
    assert state.boot_fs_warning() and state.trial == 3
    assert any("not on /boot's file system" in w for w in state.warnings())
    with pytest.raises(MalformedReply):
        hoststate.parse("boot-fs maybe\n", "web1")
    with pytest.raises(MalformedReply):
        hoststate.parse(f"generation 1 closure={_SYS} kernel=/boot/kernel/kernel\n", "web1")
