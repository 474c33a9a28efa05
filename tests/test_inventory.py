"""Inventory loading: Ansible's shape, precedence, and one-line errors with
file:line:column for every kind of bad input."""

import re

import pytest

from fruixops.inventory import model as inventory
from fruixops.errors import UserError

BASE = """
bases:
  b1:
    version_label: L1
    release: R
    branch: stable/15
    source: {tree: {path: /nonexistent}}
"""


def load_text(tmp_path, text, name="inv.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return inventory.load(p)


def error_of(tmp_path, text):
    with pytest.raises(UserError) as e:
        load_text(tmp_path, text)
    return str(e.value)


def test_lab_inventory_has_the_declared_story(tmp_path):
    inv = inventory.load("inventories/lab.yaml")
    d, c = inv.base("stable-default"), inv.base("stable-canary")
    assert (d.version_label, c.version_label) == ("15.0-STABLE", "15.0-STABLE-p1")
    assert d.release == c.release == "15.0-STABLE" and d.branch == c.branch == "stable/15"
    assert d.source == c.source
    assert {"web1", "web2", "db1"} <= set(inv.hosts)
    assert "canary" in inv.host("web1").groups and "web1" in inv.groups["canary"]
    assert inv.host("web1").var("init") == "shepherd-pid1"
    assert "sshd" in inv.host("web1").var("services")


def test_precedence_all_parent_child_host_and_var_files(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars" / "web.yaml").write_text("reboot_timeout: 20\nssh_user: webadmin\n")
    (tmp_path / "host_vars" / "w2.yaml").write_text("ssh_port: 2222\n")
    inv = load_text(tmp_path, BASE + """
all:
  vars: {ssh_user: root, ssh_port: 22, reboot_timeout: 10, base: b1}
  children:
    web:
      vars: {ssh_port: 2200}
      children:
        canary:
          vars: {ssh_port: 2201}
          hosts:
            w1: {}
      hosts:
        w2: {}
        w3: {ssh_port: 2203}
""")
    w1, w2, w3 = inv.host("w1"), inv.host("w2"), inv.host("w3")
    assert w1.var("ssh_port") == 2201          # child group beats parent group
    assert w2.var("ssh_port") == 2222          # host_vars file beats group
    assert w3.var("ssh_port") == 2203          # host beats group
    assert w1.var("ssh_user") == "webadmin"    # group_vars file applies to children
    assert w1.var("reboot_timeout") == 20
    assert inv.groups["web"] == {"w1", "w2", "w3"} and inv.groups["canary"] == {"w1"}


@pytest.mark.parametrize("text, pattern", [
    ("all: {hosts: {a: {}}\n", r"inv\.yaml:\d+:\d+: "),                       # malformed
    ("all: {}\nall: {}\n", r"inv\.yaml:2:1: duplicate key"),                   # duplicate
    (BASE + "all: {hosts: {a: {ssh_port: eighty}}}\n", r"inv\.yaml:\d+:\d+: .*ssh_port.* must be an integer"),
    (BASE + "all: {hosts: {a: {ansible_port: 70000}}}\n", r"inv\.yaml:\d+:\d+: .*port number"),
    (BASE + "all: {hosts: {'a:2x': {}}}\n", r"inv\.yaml:\d+:\d+: bad host name"),
    (BASE + "all: {hosts: {'w[1]': {}}}\n", r"inv\.yaml:\d+:\d+: host range"),
    (BASE + "all: {childs: {}}\n", r"inv\.yaml:\d+:\d+: unknown key 'childs'"),
    (BASE + "all: {children: {web: {children: {all: {}}}}}\n", r"loop"),
    (BASE + "all: {hosts: {a: {base: nope}}}\n", r"unknown base 'nope'"),
    (BASE.replace("release: R", "release: R\n    flavour: x") + "all: {}\n",
     r"inv\.yaml:\d+:\d+: unknown field 'flavour'"),
    (BASE.replace("    release: R\n", "") + "all: {}\n", r"lacks required field 'release'"),
    ("bases:\n  b:\n    version_label: L\n    release: R\n    branch: x\n"
     "    source: {dist: {base: {path: a, sha256: zz}, kernel: {path: b, sha256: zz}}}\n",
     r"sha256 must be 64"),
    (BASE + "all: {hosts: {a: {init: systemd}}}\n", r"unknown init 'systemd'"),
])
def test_bad_inventories_are_one_line_errors(tmp_path, text, pattern):
    message = error_of(tmp_path, text)
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_missing_inventory(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        inventory.load(tmp_path / "nope.yaml")


def test_example_production_inventory_loads():
    inv = inventory.load("inventories/example-production.yaml")
    assert inv.host("web01").var("power_cycle_command").startswith("ipmitool")
    assert inv.host("web01").var("ssh_host_key").startswith("ssh-ed25519 ")
    assert inv.host("db01").var("reboot_timeout") == 900          # group beats all
    assert inv.host("web02").var("services") == ["sshd", "ntpd", "nginx"]
    assert inv.base("stable-canary").source == inv.base("stable-default").source
    assert "canary" in inv.host("web01").groups


# -- fuzzing: the loader only ever fails with a one-line UserError -------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = ["all", "children", "hosts", "vars", "bases", "fruixops", "source", "dist", "tree",
         "base", "kernel", "path", "sha256", "version_label", "release", "branch", "web1",
         "web", "ssh_port", "ssh_host", "services", "init", "lab", "store", "signing_key",
         "trusted_keys", "synthetic", "seed", "size_mb", "boots", "url"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.sampled_from(_KEYS),
                     st.text(max_size=8))
_docs = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)),
    max_leaves=25)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_docs)
def test_inventory_loader_fuzz_structures(tmp_path, doc):
    import io
    from ruamel.yaml import YAML
    buf = io.StringIO()
    YAML().dump({"root": doc} if not isinstance(doc, dict) else doc, buf)
    p = tmp_path / "fuzz.yaml"
    p.write_text(buf.getvalue())
    try:
        inventory.load(p)
    except UserError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(list("ab:{}[]-,'\"&*!|> \n\t#%@`") + _KEYS),
                     max_size=60))
def test_inventory_loader_fuzz_text(tmp_path, parts):
    p = tmp_path / "fuzz.yaml"
    p.write_text("".join(parts))
    try:
        inventory.load(p)
    except UserError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t.replace("  stable-canary:\n", "  stable-canary: [\n", 1), r":\d+:\d+: "),
    (lambda t: t + "all: {}\n", r":\d+:1: duplicate key"),
    (lambda t: t.replace("    branch: stable/15\n", "    branch: stable/15\n    colour: red\n", 1),
     r":\d+:\d+: unknown field 'colour'"),
    (lambda t: re.sub(r"ssh_port: (\d+)", r"ssh_port: 'x\1'", t, count=1),
     r":\d+:\d+: .*must be an integer"),
])
def test_cli_bad_inventory_is_one_line_exit_2(project, tmp_path, edit, pattern):
    from conftest import inv_cmd
    bad = project.with_name("bad-inventory.yaml")
    bad.write_text(edit(project.read_text()))
    proc = inv_cmd(bad, "status", "--host", "web1")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert re.search(r"bad-inventory\.yaml" + pattern, proc.stderr), proc.stderr


# -- Ansible's variables, read as fruixops's -----------------------------------

def test_ansible_connection_variables_are_aliases(tmp_path):
    inv = load_text(tmp_path, BASE + """
all:
  vars: {ssh_user: root, ansible_port: "2200", base: b1}
  children:
    web:
      vars: {ssh_port: 2201}
      hosts:
        w1: {ansible_user: admin, ansible_host: 192.0.2.1, ansible_become: true}
        w2: {ssh_user: ops, ansible_user: admin}
""")
    w1, w2 = inv.host("w1"), inv.host("w2")
    assert w1.var("ssh_user") == "admin"          # the host's alias beats all's ssh_user
    assert w1.var("ssh_port") == 2201             # the group's ssh_port beats all's alias
    assert w1.ssh_host == "192.0.2.1"
    assert w1.var("ansible_become") is True       # kept for the commands that will use it
    assert w2.var("ssh_user") == "ops"            # same layer: fruixops's name wins
    assert w1.ansible_vars["ansible_port"] == "2200"   # Ansible's view is untouched


def test_near_miss_of_a_fruixops_variable_is_a_warning(tmp_path):
    p = tmp_path / "inv.yaml"
    p.write_text("all: {hosts: {a: {ssh_prot: 22, http_port: 80}}}\n")
    said = []
    inv = inventory.load(p, warn=said.append)
    assert inv.host("a").var("http_port") == 80
    assert len(said) == 1 and re.search(r"inv\.yaml:1:\d+: .*'ssh_prot'.*'ssh_port'", said[0])


def test_inventory_directory_and_several_sources(tmp_path):
    (tmp_path / "10-web.ini").write_text("[web]\nweb[1:2]\n")
    (tmp_path / "20-db.yaml").write_text("db: {hosts: {db1: }}\nweb: {vars: {role: front}}\n")
    (tmp_path / "README.md").write_text("not an inventory\n")
    inv = inventory.load(tmp_path)
    assert list(inv.hosts) == ["web1", "web2", "db1"]
    assert inv.host("web2").var("role") == "front"
    both = inventory.load([tmp_path / "20-db.yaml", tmp_path / "10-web.ini"])
    assert list(both.hosts) == ["db1", "web1", "web2"]


def test_inv_hosts_lists_graphs_and_shows_variables():
    from fruixops.inventory import hostlist
    inv = inventory.load("inventories/lab.yaml")
    chosen = hostlist.selected(inv, "web")
    assert [h.name for h in chosen] == ["web2", "web3", "web1"]
    assert hostlist.graph(inv, chosen)[:4] == ["@all:", "  |--@ungrouped:", "  |--@web:",
                                               "  |  |--@canary:"]
    listed = hostlist.listing(inv, chosen)
    assert listed["web"] == {"hosts": ["web2", "web3"], "children": ["canary"]}
    assert "db" not in listed and listed["_meta"]["hostvars"]["web1"]["ssh_port"] == 22101


def test_a_copy_of_a_hosts_variables_changes_apart_and_renders_nothing(tmp_path):
    """What keys.authorize does to reach a host as root: a copy without the
    access variables, never rendering the others."""
    inv = load_text(tmp_path, """\
all:
  hosts:
    h1: {ansible_user: "{{ lookup('pipe', 'touch rendered') }}", ansible_become: true, colour: blue}
""")
    host = inv.host("h1")
    admin = host.vars.copy()
    del admin["ansible_become"]
    admin["ssh_user"] = "root"
    assert admin["ssh_user"] == "root" and "ansible_become" not in admin
    assert host.var("ansible_become") is True and "ssh_user" in host.vars
    assert sorted(admin) == ["colour", "ssh_user"]
    assert not (tmp_path / "rendered").exists()
