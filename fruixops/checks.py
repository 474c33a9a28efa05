"""Health checks run on a host after a switch or a boot.

Checks are data: a name and a POSIX sh command whose exit status 0 means
healthy. All of them run together in one round trip, each in its own
subshell, like Guix's pre-deploy checks.
"""

import shlex
from dataclasses import dataclass

from .errors import HostError


@dataclass(frozen=True)
class Check:
    name: str
    command: str


# What the Fruix phase 15.2 report checked after each boot, as the lab can
# show it: the booted closure declares shepherd as PID 1, sshd runs, no compat
# shims are in the system, the shepherd configuration is a loadable module,
# and the activation hook ran for this closure.
BOOT_CHECKS = (
    Check("init_shepherd_pid1", "grep -qx 'init=shepherd-pid1' /run/current-system/metadata"),
    Check("sshd_running", "ps -A -o comm= | grep -qx sshd"),
    Check("no_compat_shims", "test ! -e /run/current-system/compat && "
                             "! find -L /run/current-system/ -maxdepth 1 -name 'compat*' | grep -q ."),
    Check("shepherd_module_loads", "grep -q '(use-modules (shepherd service))' "
                                   "/run/current-system/etc/shepherd/config.scm"),
    Check("activation_ran", "test \"$(cat /run/fruix/activated)\" = "
                            "\"activated $(readlink /run/current-system)\""),
)


def script(checks):
    lines = []
    for c in checks:
        lines.append(f"if ( {c.command} ) >/dev/null 2>&1; then echo {shlex.quote(c.name)} ok; "
                     f"else echo {shlex.quote(c.name)} failed; fi")
    return "\n".join(lines)


def run(hc, checks=BOOT_CHECKS):
    """Run *checks* on the host; return {name: True/False}."""
    result = hc.run(f"sh -c {shlex.quote(script(checks))}")
    if result.status != 0:
        raise HostError(hc.name, f"checks did not run: {result.last_error_line()}")
    outcome = {}
    for line in result.out.splitlines():
        name, _, verdict = line.rpartition(" ")
        outcome[name] = verdict == "ok"
    return outcome
