"""What every command-line task shares: the task decorator that turns user
errors into one line and an exit status, help texts, host selection, and how
a fleet run's result is printed."""

import functools
import inspect
import json as jsonlib
import sys

from invoke import Exit, task

from fruixops.rollout import fleet
from fruixops.inventory import limit as limit_mod
from fruixops.errors import FruixopsError, UserError

def user_task(*args, **kwargs):
    """@task without auto short flags (so --host never becomes -h), turning
    FruixopsError into one line on stderr and its exit status. A task's
    --inventory may be given several times (its value is then a list)."""
    kwargs.setdefault("auto_shortflags", False)

    def wrap(fn):
        if "inventory" in inspect.signature(fn).parameters:
            kwargs["iterable"] = list(kwargs.get("iterable", [])) + ["inventory"]
        @functools.wraps(fn)
        def run(c, *a, **kw):
            try:
                return fn(c, *a, **kw)
            except FruixopsError as exc:
                print(f"fruixops: {exc}", file=sys.stderr)
                raise Exit(code=exc.exit_status) from None
            except KeyboardInterrupt:
                print("fruixops: interrupted", file=sys.stderr)
                raise Exit(code=130) from None
        return task(*args, **kwargs)(run)
    return wrap


INVENTORY_HELP = ("inventory file or directory, YAML or INI; may be given several times "
                  "(default: $FRUIXOPS_INVENTORY or inventories/lab.yaml)")


LIMIT_HELP = ("host pattern: names, groups, globs, a:b (union), a:&b (intersection), "
              "a:!b (exclusion)")


FORKS_HELP = f"hosts worked on at once (default {fleet.DEFAULT_FORKS})"


def _need_host(host, what):
    if not host:
        raise _usage(f"{what} needs --host HOST")


def _targets(ctl, host, limit, what):
    if host and limit:
        raise _usage(f"{what}: give --host or --limit, not both")
    if host:
        return [ctl.inventory.host(host)]
    if limit:
        return limit_mod.select(ctl.inventory, limit)
    raise _usage(f"{what} needs --host HOST or --limit PATTERN")


def _finish(outcomes, json, lines=()):
    """Print the run's result (JSON, or lines and a recap) and exit with its status."""
    if json:
        _print_json(outcomes.to_json())
    else:
        for line in lines:
            print(line)
        if len(outcomes) > 1:
            print(outcomes.recap())
    for o in outcomes.values():
        for m in o.messages:
            print(f"fruixops: {m}", file=sys.stderr)
    if outcomes.exit_status():
        raise Exit(code=outcomes.exit_status())


def _display(hosts, json):
    from fruixops.rollout.display import FleetDisplay
    from fruixops.rollout.events import ConsoleEvents
    if len(hosts) == 1 and not json:
        return _Nullcontext(ConsoleEvents())
    return FleetDisplay([h.name for h in hosts])


class _Nullcontext:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def _generation_number(text):
    if text in (None, ""):
        return None
    if not str(text).isdigit():
        raise _usage(f"--to takes a generation number, not {text!r}")
    return int(text)


def _usage(message):
    return UserError(message)


def _print_json(obj):
    print(jsonlib.dumps(obj, indent=2, sort_keys=True))
