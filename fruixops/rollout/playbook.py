"""Playbooks: staged rollouts under ``playbooks/``.

    name: canary rollout
    base: stable-canary              # default for every stage
    checks: [...]                    # run in every stage, after its own
    stages:
      - name: canary
        hosts: canary                # a host pattern (see limit.py)
        trial: true                  # one-shot boot; current only if checks pass
      - name: web
        hosts: "web:!canary"
        serial: [1, "50%", "100%"]   # batch sizes; the last one repeats
        reboot: true
        max_fail_percentage: 0       # a batch fails above this share of failed hosts
        rollback_on_failure: true
        pause: 5                     # seconds between batches, or "confirm"
        checks:
          - {name: http, command: "fetch -qo - http://localhost/health",
             expect_output: "^ok$", retries: 3, delay: 2, timeout: 10}

A stage's ``action`` is ``deploy`` (default) or ``rollback`` (each host back to
its rollback generation). Everything is checked against the inventory when
the playbook is loaded: a bad field, type, base or host pattern is a one-line
error with file:line:column before any host is touched.
"""

import re
from dataclasses import dataclass, field

from fruixops.inventory import limit as limit_mod
from fruixops.inventory import yamlfile
from fruixops.rollout.checks import Check
from fruixops.inventory.yamlfile import Fields, check_type, item_node, whole_node

STAGE_FIELDS = {"name", "hosts", "base", "serial", "max_fail_percentage", "reboot", "trial",
                "rollback_on_failure", "pause", "checks", "action"}
CHECK_FIELDS = {"name", "command", "expect_exit", "expect_output", "retries", "delay", "timeout"}
_PCT = re.compile(r"^([0-9]{1,3})%$")


@dataclass
class Stage:
    name: str
    hosts: str
    host_names: list            # what the pattern matched at load time, inventory order
    base: str | None = None
    serial: list = field(default_factory=list)   # ints and ("%", n) tuples
    max_fail_percentage: float = 0
    reboot: bool = False
    trial: bool = False
    rollback_on_failure: bool = False
    pause: object = 0           # seconds, or "confirm"
    checks: tuple = ()
    action: str = "deploy"
    where: str = ""

    def batches(self, hosts):
        """Split *hosts* into batches by ``serial`` (Ansible's rules)."""
        if not self.serial:
            return [list(hosts)] if hosts else []
        out, i, k = [], 0, 0
        while i < len(hosts):
            spec = self.serial[min(k, len(self.serial) - 1)]
            size = (max(1, len(hosts) * spec[1] // 100) if isinstance(spec, tuple) else spec)
            out.append(list(hosts[i:i + size]))
            i += size
            k += 1
        return out


@dataclass
class Playbook:
    path: str
    name: str
    base: str | None
    stages: list


def load(path, inventory):
    doc = yamlfile.load(path)
    top = Fields(whole_node(doc, path), {"name", "base", "checks", "stages"}, "playbook")
    base = top.get("base", str)
    if base is not None:
        _check_base(inventory, base, top.node_of("base"))
    common = _checks(top, path, "playbook")
    if "stages" not in top:
        raise top.node.error("playbook lacks required field 'stages'")
    snode = top.node_of("stages")
    check_type(snode, list, "stages")
    if not snode.value:
        raise snode.error("stages is empty")
    stages = []
    for i in range(len(snode.value)):
        stages.append(_stage(item_node(snode.value, i, path), inventory, base, common, i + 1))
    return Playbook(str(path), top.get("name", str, str(path)), base, stages)


def _check_base(inventory, name, node):
    if name not in inventory.bases:
        raise node.error(f"unknown base {name!r} (bases: {', '.join(sorted(inventory.bases))})")


def _stage(node, inventory, default_base, common, number):
    f = Fields(node, STAGE_FIELDS, f"stage {number}")
    name = f.get("name", str, f"stage {number}")
    hosts = f.get("hosts", str, required=True)
    matched = [h.name for h in limit_mod.select(inventory, hosts,
                                                where=f.node_of("hosts").where)]
    action = f.get("action", str, "deploy")
    if action not in ("deploy", "rollback"):
        raise f.node_of("action").error("action must be 'deploy' or 'rollback'")
    base = f.get("base", str, default_base)
    if base is not None and "base" in f:
        _check_base(inventory, base, f.node_of("base"))
    mfp = 0
    if "max_fail_percentage" in f:
        n = f.node_of("max_fail_percentage")
        if isinstance(n.value, bool) or not isinstance(n.value, (int, float)) \
                or not 0 <= n.value <= 100:
            raise n.error("max_fail_percentage must be a number from 0 to 100")
        mfp = n.value
    pause = 0
    if "pause" in f:
        n = f.node_of("pause")
        if n.value != "confirm" and (isinstance(n.value, bool) or not isinstance(n.value, int)
                                     or n.value < 0):
            raise n.error("pause must be a number of seconds or 'confirm'")
        pause = n.value
    trial = f.get("trial", bool, False)
    if trial and action == "rollback":
        raise f.node_of("trial").error("trial goes with deploy stages only")
    if action == "rollback" and "checks" in f:
        raise f.node_of("checks").error(
            "a rollback stage runs the checks signed with the generation it returns to; "
            "it cannot add checks of its own")
    return Stage(name=name, hosts=hosts, host_names=matched, base=base,
                 serial=_serial(f), max_fail_percentage=mfp,
                 reboot=f.get("reboot", bool, False) or trial, trial=trial,
                 rollback_on_failure=f.get("rollback_on_failure", bool, False), pause=pause,
                 checks=(tuple(_checks(f, node.path, f"stage {name!r}")) + tuple(common)
                         if action == "deploy" else ()),
                 action=action, where=node.where)


def _serial(f):
    if "serial" not in f:
        return []
    node = f.node_of("serial")
    values = node.value if isinstance(node.value, list) else [node.value]
    if not values:
        raise node.error("serial is empty")
    out = []
    for i, v in enumerate(values):
        vnode = item_node(node.value, i, node.path) if isinstance(node.value, list) else node
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out.append(v)
        elif isinstance(v, str) and _PCT.match(v) and 0 < int(_PCT.match(v).group(1)) <= 100:
            out.append(("%", int(_PCT.match(v).group(1))))
        else:
            raise vnode.error(f"serial value {v!r} must be a positive integer or a "
                              "percentage such as '25%'")
    return out


def _checks(f, path, what):
    if "checks" not in f:
        return []
    node = f.node_of("checks")
    check_type(node, list, f"checks of {what}")
    out = []
    for i in range(len(node.value)):
        c = Fields(item_node(node.value, i, path), CHECK_FIELDS, f"a check of {what}")
        expect = c.get("expect_output", str)
        if expect is not None:
            try:
                re.compile(expect)
            except re.error as exc:
                raise c.node_of("expect_output").error(f"bad regular expression: {exc}") from None
        numbers = {}
        for key, default in (("retries", 0), ("delay", 1), ("timeout", 30)):
            if key in c:
                n = c.node_of(key)
                if isinstance(n.value, bool) or not isinstance(n.value, (int, float)) \
                        or n.value < 0:
                    raise n.error(f"{key} must be a non-negative number")
                numbers[key] = n.value
            else:
                numbers[key] = default
        out.append(Check(name=c.get("name", str, required=True),
                         command=c.get("command", str, required=True),
                         expect_exit=c.get("expect_exit", int, 0), expect_output=expect,
                         retries=int(numbers["retries"]), delay=float(numbers["delay"]),
                         timeout=float(numbers["timeout"])))
    return out
