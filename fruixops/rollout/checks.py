"""Health checks run on a host after a switch or a boot.

Checks are data: a name, a POSIX sh command, and what counts as healthy (an
exit status, optionally a regular expression the output must match), with
retries, a delay between tries and a timeout. Built-in checks and a
playbook's checks go through the same code.

The command travels in the signed manifest of the generation it checks;
the host runs it by name (the receiver's ``check N NAME``), so the
controller can make a host run only a check a trusted key signed for that
generation. What counts as healthy is judged here, on the controller.
"""

import re
import time
from dataclasses import dataclass

from fruixops.remote.connection import CommandTimeout
# A check is data signed into a manifest (fruixops.store.manifest).
from fruixops.store.manifest import Check, wire_name


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


# What the Fruix phase 15.2 report checked after each boot, each observed on
# the running host (never read back from what fruixops wrote): PID 1 is
# shepherd and answers herd; sshd runs as shepherd's child, by shepherd's own
# account of it; Guile loads the booted system's configuration with the
# (shepherd service) module (the seed's guile_module_smoke); no compat or
# prefix shims on the live file system; activation ran for this closure.
# Each is shown failing on the lab for its reason (tests/test_boot_checks_lab.py).
_SHEPHERD_CHILD = (
    # herd's own account: "It is running since ..." and the running value,
    # its process ("Running value is N." in Shepherd 0.10; "Main PID: N" later).
    'st=$(herd status {name} 2>/dev/null) && printf "%s\\n" "$st" | grep -q "It is running" &&'
    ' pid=$(printf "%s\\n" "$st" | sed -En "s/^ *(Running value is|Main PID:) *([0-9]+).*/\\2/p" |'
    ' head -n 1) && [ -n "$pid" ] && [ "$(ps -o ppid= -p "$pid" | tr -d " ")" = 1 ]')
# The configuration evaluated in a module of its own, with (shepherd service)
# and everything it uses, except that registering and starting are no-ops:
# a syntax error, an unbound name or a module that does not load fails it.
_GUILE_LOADS = (
    "guile --no-auto-compile -c '(let ((m (make-fresh-user-module)))"
    " (module-use! m (resolve-interface (quote (shepherd service))))"
    " (module-define! m (quote register-services) (lambda args #t))"
    " (module-define! m (quote start-in-the-background) (lambda args #t))"
    " (save-module-excursion (lambda () (set-current-module m)"
    " (load \"/run/current-system/etc/shepherd/config.scm\"))))'")
BOOT_CHECKS = (
    Check("init_shepherd_pid1",
          "ps -o args= -p 1 | grep -Eq '(^|[ /])shepherd( |$)' && herd status >/dev/null"),
    Check("sshd_under_shepherd",
          _SHEPHERD_CHILD.format(name="sshd") + ' && [ "$(ps -o comm= -p "$pid")" = sshd ]',
          retries=5, delay=1.0),
    Check("no_compat_shims",
          "test ! -e /run/current-system/compat && "
          "! find /bin /sbin /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin -maxdepth 1 "
          "-type l -lname '/frx/store/*' 2>/dev/null | grep -q ."),
    Check("guile_module_smoke", _GUILE_LOADS),
    Check("activation_ran", "test \"$(cat /run/fruix/activated)\" = "
                            "\"activated $(readlink /run/current-system)\""),
)


def with_services(checks, host):
    """*checks*, and when they hold the built-in ones, the host's service
    checks too: a trial of a system whose declared service cannot run fails."""
    from fruixops.system.services import declare
    if not any(c in BOOT_CHECKS for c in checks):
        return tuple(checks)
    return tuple(checks) + tuple(c for c in service_checks(declare.services_of(host))
                                 if c not in checks)


def service_checks(services):
    """One check per service the system declares besides sshd: running as
    shepherd's child, by shepherd's account (services start in the
    background: a few tries)."""
    return tuple(Check(f"service_{s.name}", _SHEPHERD_CHILD.format(name=s.name),
                       retries=5, delay=1.0)
                 for s in services if s.name != "sshd")


BOOTED = "booted_closure"
def booted_check():
    """Always run after a reboot: the loader booted the generation checked
    and its closure, as the kernel environment says (the receiver's built-in
    check "booted", compared as strings on the host, never as patterns)."""
    return Check(BOOTED, "")


def run_one(hc, check, generation):
    """Run *check* as generation *generation*'s signed check of that name."""
    tries = check.retries + 1
    detail = ""
    name = "booted" if check.name == BOOTED else wire_name(check.name)
    for attempt in range(tries):
        if attempt:
            time.sleep(check.delay)
        try:
            r = hc.run(hc.receiver("check", generation, name), timeout=check.timeout)
        except CommandTimeout:
            detail = f"timed out after {check.timeout}s"
            continue
        refused = [ln for ln in r.err.splitlines() if ln.startswith("refused: ")]
        if refused:
            return CheckResult(check.name, False, refused[-1])
        out = r.out.strip()
        if r.status != check.expect_exit:
            detail = f"exit {r.status}, expected {check.expect_exit}"
            continue
        if check.expect_output is not None and not re.search(check.expect_output, out, re.M):
            detail = f"output {out[:80]!r} does not match {check.expect_output!r}"
            continue
        return CheckResult(check.name, True)
    return CheckResult(check.name, False, detail + (f" ({tries} tries)" if tries > 1 else ""))


def run(hc, generation, checks=BOOT_CHECKS):
    """Run *checks* of *generation* on the host behind *hc*; return
    {name: True/False}."""
    return {r.name: r.ok for r in run_all(hc, checks, generation)}


def run_all(hc, checks, generation):
    return [run_one(hc, c, generation) for c in checks]
