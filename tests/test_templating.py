"""Templated values as ansible-core renders them (its Templar is the oracle),
rendered only when read, and every failure one line naming file:line and
the variable; the environment host configuration templates are rendered in."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

import ansible_oracle as ao
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from fruixops.inventory import model as inventory
from fruixops.inventory import templating
from fruixops.errors import UserError
from fruixops.inventory.groups import Var

WHERE = "inv/hosts.yaml:3:7"
VARIABLES = {"port": 5, "twice": "{{ port * 2 }}", "items": [1, "{{ port }}"],
             "nested": {"k": "{{ port + 1 }}"}, "text": "plain", "nothing": None, "on": True,
             "loop_a": "{{ loop_b }}", "loop_b": "{{ loop_a }}", "itself": "{{ itself }}x"}
EXPRESSIONS = [
    # native types: one expression keeps its type, several pieces are text
    "{{ 22 | int }}", "{{ '22' }}", "{{ '22' | int }}", "{{ 22.0 }}", "{{ True }}", "{{ none }}",
    "{{ [1, 2] }}", "{{ {'a': 1} }}", "{{ 1 }}{{ 2 }}", " {{ 1 }}", "{{ 1 }} ", "{{ none }}x",
    "{{ text }}-{{ nothing }}-{{ on }}", "{{ items }}x", "{{ '010' }}", "{{ 'yes' }}",
    "{% if true %}{{ 3 }}{% endif %}", "{# note #}{{ 1 }}", "{% for i in items %}{{ i }},{% endfor %}",
    # trailing newlines, backslashes in constants (YAML has read the escapes)
    "{{ 1 }}\n", "{{ 'a' }}\n", "{{ 'a' }}\n\n", "plain\n", "{{ 'a\\nb' }}", "\\{{ 1 }}",
    # other variables, rendered when read
    "{{ twice }}", "{{ items }}", "{{ nested.k }}", "{{ nested }}", "{{ nothing }}",
    "{{ undefined | default('d') }}", "{{ undefined | d('d') }}", "{{ port is defined }}",
    "{{ undefined is undefined }}", "{{ none | default('z', true) }}",
    # filters
    "{{ ' true ' | trim }}", "{{ 'yes' | bool }}", "{{ 'Off' | bool }}", "{{ 1 | bool }}",
    "{{ port | string }}", "{{ 'A' | lower }}{{ 'b' | upper }}", "{{ 'a-b' | replace('-', '_') }}",
    "{{ 'abc1' | regex_replace('[0-9]', 'N') }}", "{{ 'ab12' | regex_search('[0-9]+') }}",
    "{{ 'ab12' | regex_search('(b)(1)', '\\\\2') }}", "{{ ['a', 'b'] | join(',') }}",
    "{{ [1, 'a'] | to_json }}", "{{ {'b': 1, 'a': [1]} | to_nice_json }}",
    "{{ {'a': 1, 'y': 'yes'} | to_yaml }}", "{{ {'a': [1, 2], 'b': {'c': 'x'}} | to_nice_yaml }}",
    "{{ 'hi' | b64encode }}", "{{ 'aGk=' | b64decode }}", "{{ '/a/b/c' | basename }}",
    "{{ '/a/b/c' | dirname }}", "{{ 'a b' | quote }}", "{{ 'a,b' | split(',') }}",
    "{{ nested | dict2items }}", "{{ true | ternary('y', 'n') }}", "{{ [22] | first }}",
    "{{ 'abc' is match('a') }}", "{{ 'abc' is search('c') }}",
    # lookups: env, file (DIR/files/NAME, then DIR/NAME), pipe (run in DIR)
    "{{ lookup('env', 'TEMPLATING_TEST') }}", "{{ lookup('env', 'NO_SUCH_VARIABLE_X') }}",
    "{{ lookup('env', 'NO_SUCH_VARIABLE_X', default='d') }}",
    "{{ lookup('env', 'TEMPLATING_TEST', 'TEMPLATING_TEST') }}", "{{ query('env', 'TEMPLATING_TEST') }}",
    "{{ lookup('env') }}", "{{ lookup('file', 'note') }}", "{{ lookup('file', 'kept') }}",
    "{{ lookup('pipe', 'cat note; echo') }}", "{{ lookup('pipe', 'pwd') }}",
    "{{ lookup('pipe', 'echo a; echo b') }}", "{{ lookup('file', 'none', errors='ignore') }}",
    "{{ query('file', 'none', errors='ignore') }}",
    "{{ lookup('pipe', 'exit 1', errors='ignore', wantlist=True) }}",
    # refused by both
    "{{ undefined }}", "{{ undefined.x }}", "{{ [undefined] }}", "{{ lookup('env', undefined) }}",
    "{{ undefined | mandatory }}", "{{ twice + ", "{{ 1 | no_such_filter }}",
    "{{ 1 is no_such_test }}", "{{ lookup('no_such_lookup', 'x') }}", "{{ lookup('file', 'none') }}",
    "{{ lookup('pipe', 'exit 3') }}", "{{ loop_a }}", "{{ itself }}", "{{ 1 / 0 }}", "{{ 'a' + 1 }}",
    "{{ ''.__class__ }}", "{{ 'ab' | regex_search('a', 'x') }}",
]
# Refused by fruixops, where ansible-core 2.19 coerces to False with a
# deprecation warning (an error from 2.23).
REFUSED_HERE = ["{{ 'maybe' | bool }}", "{{ none | bool }}"]


@pytest.fixture(scope="module")
def basedir(tmp_path_factory):
    d = tmp_path_factory.mktemp("values")
    (d / "files").mkdir()
    (d / "files" / "note").write_text("from files/\n\n")   # files/ first, as Ansible looks
    (d / "note").write_text("beside\n")
    (d / "kept").write_text("  kept  \n")
    os.environ["TEMPLATING_TEST"] = "from-env"
    return d


def ansible_renders(template, basedir):
    def trusted(v):
        if isinstance(v, dict):
            return {k: trusted(x) for k, x in v.items()}
        if isinstance(v, list):
            return [trusted(x) for x in v]
        return trust_as_template(v) if isinstance(v, str) else v
    loader = DataLoader()
    loader.set_basedir(str(basedir))
    try:
        return Templar(loader=loader, variables=trusted(VARIABLES)).template(trusted(template))
    except Exception:          # noqa: BLE001 -- any failure is a refusal
        return ao.REFUSED


def fruixops_renders(template, basedir):
    variables = templating.Variables({k: Var(v, f"{basedir}/vars.yaml:1:1")
                                      for k, v in VARIABLES.items()})
    try:
        return templating.render_value(template, variables, f"{basedir}/hosts.yaml:3:7", "x")
    except UserError as exc:
        assert "\n" not in str(exc)
        return ao.REFUSED


@pytest.mark.parametrize("template", EXPRESSIONS)
def test_values_render_as_ansible_renders_them(template, basedir):
    assert ao.canon(fruixops_renders(template, basedir)) == \
        ao.canon(ansible_renders(template, basedir))


@pytest.mark.parametrize("template", REFUSED_HERE)
def test_a_bool_of_anything_else_is_refused(template, basedir):
    assert ansible_renders(template, basedir) is False
    assert fruixops_renders(template, basedir) == ao.REFUSED


def test_values_that_are_no_templates_are_kept_as_they_are():
    for value in ["plain\n", "a } b", "{ not: jinja }", 22, None, True, [1, "x"], {"k": "v"}]:
        assert templating.render_value(value, {}, WHERE) == value


@pytest.mark.parametrize("template, message", [
    ("{{ undefined }}", r"variable 'x': 'undefined' is undefined$"),
    ("{{ lookup('vault', 'x') }}", r"variable 'x': lookup 'vault' is not one fruixops has "
                                   r"\(env, file, pipe\)$"),
    ("{{ 1 | to_uuid }}", r"variable 'x': template error: No filter named 'to_uuid'"),
    ("{{ 1 +", r"variable 'x': template error: unexpected"),
    ("{{ lookup('pipe', 'exit 3') }}", r"variable 'x': lookup 'pipe': 'exit 3' exited with 3$"),
])
def test_a_failure_is_one_line_naming_file_line_and_variable(tmp_path, template, message):
    where = f"{tmp_path}/hosts.yaml:3:7"
    with pytest.raises(UserError) as err:
        templating.render_value(template, {}, where, "x")
    assert str(err.value).startswith(where + ": ") and "\n" not in str(err.value)
    assert re.search(message, str(err.value)), str(err.value)


def test_a_loop_names_the_variables_in_it():
    variables = templating.Variables({"a": Var("{{ b }}", "inv.yaml:1:4"),
                                      "b": Var("{{ a }}", "inv.yaml:2:4")})
    with pytest.raises(UserError, match=r"^inv\.yaml:\d:4: variable '\w' refers to itself "
                                        r"\((a -> b -> a|b -> a -> b)\)$"):
        variables["a"]


def test_only_the_variables_read_are_rendered(tmp_path):
    """As Ansible: a value is rendered when it is read (a lookup it runs is
    run then), and a broken template nobody reads does not stop the load."""
    (tmp_path / "hosts.yaml").write_text("""\
all:
  hosts:
    h1:
      ansible_user: "{{ lookup('pipe', 'touch user-was-read; whoami') }}"
      other_tools_var: "{{ lookup('pipe', 'touch other-was-read') }}"
      broken: "{{ no_such_variable }}"
      ansible_port: "{{ 2200 + 22 }}"
""")
    inv = inventory.load(tmp_path / "hosts.yaml")
    host = inv.host("h1")
    assert not (tmp_path / "user-was-read").exists()
    assert host.var("ssh_port") == 2222
    assert host.var("ssh_user") and (tmp_path / "user-was-read").exists()
    assert not (tmp_path / "other-was-read").exists()
    with pytest.raises(UserError, match=r"hosts\.yaml:6:15: variable 'broken': "
                                        r"'no_such_variable' is undefined"):
        host.var("broken")
    # ansible-inventory --host prints values as written, and so does --vars.
    assert host.ansible_vars["ansible_port"] == "{{ 2200 + 22 }}"


def test_a_value_sees_the_host_and_its_groups(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text(
        'ansible_host: "{{ inventory_hostname_short }}.{{ domain }}"\n'
        'ansible_ssh_private_key_file: "keys/{{ group_names | join(\'-\') }}"\n')
    (tmp_path / "hosts.yaml").write_text("""\
all:
  vars: {domain: example.org}
  children:
    web: {hosts: {w1.lan: {}}}
    canary: {hosts: {w1.lan: {}}}
""")
    host = inventory.load(tmp_path / "hosts.yaml").host("w1.lan")
    assert host.ssh_host == "w1.example.org"
    assert host.var("ssh_key") == str(tmp_path / "keys" / "canary-web")   # beside the inventory


def test_power_cycle_command_is_not_a_jinja_template(tmp_path):
    """Its braces are str.format's ({host}, {{ for a brace): never rendered,
    and a Jinja2 expression in it, which would run as its own text, refused."""
    (tmp_path / "hosts.yaml").write_text("""\
all:
  hosts:
    h1: {power_cycle_command: "awk 'BEGIN {{ exit 0 }}' && ipmitool -H {host} power cycle"}
    h2: {power_cycle_command: "ipmitool -H {{ bmc_host }} power cycle", bmc_host: b2}
""")
    with pytest.raises(UserError, match=r"hosts\.yaml:4:\d+: power_cycle_command is not a "
                                        r"Jinja2 template .*\{\{ bmc_host \}\}"):
        inventory.load(tmp_path / "hosts.yaml")
    text = (tmp_path / "hosts.yaml").read_text()
    (tmp_path / "hosts.yaml").write_text(text.replace("{{ bmc_host }}", "{host}-bmc"))
    h1 = inventory.load(tmp_path / "hosts.yaml").host("h1")
    assert h1.var("power_cycle_command").startswith("awk 'BEGIN {{ exit 0 }}'")


def test_the_environment_of_configuration_templates(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").write_text("welcome\n")
    (tmp_path / "sshd_config.j2").write_text(
        "Port {{ port }}\n{% if extra %}\n{{ extra }}\n{% endif %}\n"
        "Banner {{ lookup('file', 'motd') }}\n# {{ nothing }}\n")
    env = templating.environment(tmp_path)
    text = env.get_template("sshd_config.j2").render(port=22, extra="X", nothing=None)
    assert text == "Port 22\nX\nBanner welcome\n# \n"     # trailing newline kept, None empty
    with pytest.raises(Exception, match="'port' is undefined"):
        env.get_template("sshd_config.j2").render(extra="")


def _doc_examples():
    text = (Path(__file__).parent.parent / "docs" / "inventory.md").read_text()
    table = text.split("<!-- values: rendered by fruixops and by ansible-core in "
                       "test_templating.py -->")[1].split("<!-- /values -->")[0]
    for row in table.strip().splitlines()[2:]:
        value, rendered = [cell.strip().strip("`").replace("\\|", "|")
                           for cell in row.strip().strip("|").split(" | ")]
        yield yaml.safe_load(value), json.loads(rendered)    # as a YAML inventory reads it


@pytest.mark.parametrize("value, rendered", list(_doc_examples()))
def test_the_examples_of_docs_inventory_md(value, rendered, basedir):
    assert ao.canon(fruixops_renders(value, basedir)) == ao.canon(rendered)
    assert ao.canon(ansible_renders(value, basedir)) == ao.canon(rendered)
