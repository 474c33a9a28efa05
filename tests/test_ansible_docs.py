"""Hand-written cases in the shapes of Ansible's documentation (the inventory
guide and the patterns page), each answered by ansible-core and by fruixops:
the answers must be equal, and equal to what is written here."""

from pathlib import Path

import pytest

import ansible_oracle as ao

DOCS = Path(__file__).parent / "data" / "ansible-docs"
INI, YAML = DOCS / "hosts.ini", DOCS / "hosts.yaml"


@pytest.fixture(scope="module", params=["ini", "yaml", "dir"])
def both(request):
    sources = {"ini": [INI], "yaml": [YAML], "dir": [DOCS]}[request.param]
    return request.param, ao.Oracle(sources), ao.load_fruixops(sources)


def test_same_hosts_groups_and_variables(both):
    _, oracle, inv = both
    assert list(inv.hosts) == oracle.hosts
    for name, group in oracle.im.groups.items():
        assert inv.groups[name] == {h.name for h in group.get_hosts()}, name
    assert ao.compare_vars(inv, oracle) == []


INI_PATTERNS = [
    ("all", None),
    ("*", None),
    ("webservers", ["foo.example.com", "bar.example.com", "www01.example.com",
                    "www02.example.com", "www03.example.com"]),
    ("webservers:dbservers", None),
    ("webservers,dbservers", None),
    ("webservers:!phoenix", ["foo.example.com", "www01.example.com", "www02.example.com",
                             "www03.example.com"]),
    ("webservers:&staging", ["foo.example.com"]),
    ("webservers:dbservers:&staging:!phoenix", ["foo.example.com", "one.example.com"]),
    ("one.example.com", ["one.example.com"]),
    ("one.example.com:two.example.com", ["one.example.com", "two.example.com"]),
    ("*.example.com", None),
    # www01 does not start with "web": only the db- hosts
    ("~(web|db).*\\.example\\.com", ["db-a.example.com", "db-b.example.com",
                                     "db-c.example.com"]),
    ("webservers[0]", ["foo.example.com"]),
    ("webservers[-1]", ["www03.example.com"]),
    ("webservers[0:2]", ["foo.example.com", "bar.example.com", "www01.example.com"]),
    ("webservers[1:]", ["bar.example.com", "www01.example.com", "www02.example.com",
                        "www03.example.com"]),
    ("webservers[:3]", ao.REFUSED),      # not a subscript: a glob with [:3], naming nothing
    ("webservers[9]", ao.REFUSED),       # no tenth host: an error in both
    ("db-[ab].example.com", ["db-a.example.com", "db-b.example.com"]),
    ("usa", ["host4", "host1", "host2", "host3"]),
    ("southeast:!atlanta", ["host3"]),
    ("all:!usa", None),
    ("ungrouped", ["mail.example.com"]),
    ("phoenix:nosuch", ao.REFUSED),      # Ansible ignores the unknown term; fruixops refuses
    ("all:!nosuch", ao.REFUSED),
    ("staging:&phoenix", ao.REFUSED),    # selects nothing
]


@pytest.mark.parametrize("pattern, expected", INI_PATTERNS)
def test_patterns_of_the_docs(pattern, expected):
    oracle, inv = ao.Oracle([INI]), ao.load_fruixops([INI])
    want, got = oracle.select(pattern), ao.fruixops_select(inv, pattern)
    if pattern in ("phoenix:nosuch", "all:!nosuch"):
        assert want == ao.REFUSED     # with HOST_PATTERN_MISMATCH=error, as fruixops
    assert got == want
    if expected is not None:
        assert got == expected


def test_limit_file_as_a_retry_file(tmp_path):
    retry = tmp_path / "site.retry"
    retry.write_text("host1\nwww02.example.com\n\n")
    oracle, inv = ao.Oracle([INI]), ao.load_fruixops([INI])
    assert sorted(oracle.limit(f"@{retry}")) == ["host1", "www02.example.com"]
    assert ao.fruixops_select(inv, f"@{retry}") == ["host1", "www02.example.com"]


def test_group_priority_and_precedence_as_documented():
    inv = ao.load_fruixops([INI])
    assert inv.host("prio1").ansible_vars["testvar"] == "a"       # priority 10 beats name order
    host1 = inv.host("host1").ansible_vars
    assert host1["http_port"] == 8080                 # host_vars/ beats the host line
    assert host1["ntp_server"] == "ntp.example.com"   # group_vars/all beats [atlanta:vars]
    assert host1["escape_pods"] == 4                  # group_vars/southeast/ merged in name order
    assert host1["halon_system_timeout"] == 30        # INI values are Python literals
    assert inv.host("bar.example.com").var("ssh_port") == 2222     # host:port
    assert inv.host("host4").vars["ssh_host"] == "192.0.2.4"       # ansible_host is ssh_host
    assert inv.host("host4").vars["ssh_user"] == "admin"


def test_yaml_parent_declared_before_its_children_hosts():
    inv = ao.load_fruixops([YAML])
    assert inv.groups["usa"] == {"host1", "host2", "host3", "host4"}
    assert ao.fruixops_select(inv, "all:!usa") == ["www01.example.com", "www02.example.com",
                                                   "www03.example.com", "bar.example.com"]
    assert inv.host("host4").var("ssh_port") == 2222              # "2222" read as a port
    assert inv.host("host1").ansible_vars["ntp_server"] == "ntp.example.com"


@pytest.mark.parametrize("name", ["lab.yaml", "example-production.yaml"])
def test_shipped_inventories_as_ansible_reads_them(tmp_path, name):
    """Without fruixops's own blocks, ansible-core reads the same hosts, groups
    and variables from the shipped inventories."""
    shipped = Path(__file__).parent.parent / "inventories" / name
    text = shipped.read_text()
    ansible_only = tmp_path / name
    ansible_only.write_text(text[text.index("\nall:"):])
    oracle, inv = ao.Oracle([ansible_only]), ao.load_fruixops([shipped])
    assert list(inv.hosts) == oracle.hosts
    assert ao.compare_vars(inv, oracle) == []
    for pattern in ["all", "web", "canary", "web:!canary", "all:!web", "web[0]", "db*", "~.*1$"]:
        assert ao.fruixops_select(inv, pattern) == oracle.select(pattern), pattern


def _doc_examples():
    text = (Path(__file__).parent.parent / "docs" / "inventory.md").read_text()
    table = text.split("<!-- patterns: tests/data/ansible-docs/hosts.ini -->")[1]
    table = table.split("<!-- /patterns -->")[0]
    for row in table.strip().splitlines()[2:]:
        pattern, hosts = [cell.strip() for cell in row.strip("|").split(" | ")]
        pattern = pattern.strip("`").replace("\\|", "|")
        yield pattern, ao.REFUSED if hosts.startswith("refused") else hosts.split()


@pytest.mark.parametrize("pattern, expected", list(_doc_examples()))
def test_the_examples_of_docs_inventory_md(pattern, expected):
    oracle, inv = ao.Oracle([INI]), ao.load_fruixops([INI])
    assert ao.fruixops_select(inv, pattern) == expected
    if pattern != "phoenix:nosuch":       # ansible-core refuses it only with MISMATCH=error
        assert oracle.select(pattern) == expected
