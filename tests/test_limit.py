"""--limit patterns over the lab inventory (unit tests, no hosts needed)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fruixops.inventory import model as inventory
from fruixops.errors import UserError
from fruixops.inventory.limit import select


@pytest.fixture(scope="module")
def inv():
    return inventory.load("inventories/lab.yaml")


def names(inv, pattern):
    return [h.name for h in select(inv, pattern)]


@pytest.mark.parametrize("pattern, expected", [
    ("web1", ["web1"]),
    ("web", ["web2", "web3", "web1"]),
    ("canary", ["web1"]),
    # a group's own hosts, then its children's, level by level (as ansible-core)
    ("all", ["web2", "web3", "db1", "db2", "mon1", "web1"]),
    ("db*", ["db1", "db2"]),
    ("web[0]", ["web2"]),                        # a position in the group, not a glob
    ("web[-1]", ["web1"]),
    ("web[0:1]", ["web2", "web3"]),
    ("web[1:]", ["web3", "web1"]),
    ("~web[12]", ["web1", "web2"]),              # a regex over names
    ("web:db", ["web2", "web3", "web1", "db1", "db2"]),
    ("db:web", ["db1", "db2", "web2", "web3", "web1"]),
    ("web db1", ["web2", "web3", "web1", "db1"]),
    ("web,db1", ["web2", "web3", "web1", "db1"]),
    ("web:!canary", ["web2", "web3"]),
    ("all:!web:!db", ["mon1"]),
    ("web:&canary", ["web1"]),
    ("all:&db:!db2", ["db1"]),
    ("!web", ["db1", "db2", "mon1"]),            # only exclusions: from all
    ("ungrouped:web1", ["web1"]),                # ungrouped is empty here
    ("&db", ["db1", "db2"]),
    ("!canary:web", ["web2", "web3"]),           # order of terms does not matter
    ("d?1", ["db1"]),
    ("inf*", ["mon1"]),                          # a glob over group names too
])
def test_patterns(inv, pattern, expected):
    assert names(inv, pattern) == expected


@pytest.mark.parametrize("pattern, message", [
    ("nosuch", "no host or group named 'nosuch'"),
    ("web:!nosuch", "no host or group named 'nosuch'"),     # Ansible would ignore it
    ("web:&db", "matches no host"),
    ("zz*", "no host or group matches 'zz[*]'"),
    ("web[12]", "no position 12"),
    ("web,db:!db2", "no host or group named 'db:!db2'"),   # with commas, ':' is in the term
    ("~web(", "bad regular expression"),
    ("", "empty host pattern"),
])
def test_bad_patterns_name_the_pattern(inv, pattern, message):
    with pytest.raises(UserError, match=message):
        select(inv, pattern)


def test_limit_file_one_term_a_line(inv, tmp_path):
    retry = tmp_path / "deploy.retry"
    retry.write_text("db2\nweb1\n")
    assert names(inv, f"@{retry}") == ["db2", "web1"]
    assert names(inv, f"web:@{retry}") == ["web2", "web3", "web1", "db2"]
    with pytest.raises(UserError, match="cannot read"):
        select(inv, f"@{tmp_path}/nope")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="webd12*?[]!&:,all ~-", max_size=20))
def test_limit_parser_never_crashes(inv, pattern):
    try:
        result = select(inv, pattern)
        assert result and all(h.name in inv.hosts for h in result)
    except UserError:
        pass
