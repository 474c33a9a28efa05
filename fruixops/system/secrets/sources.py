"""A secret's value, read on the controller from where its declaration says:
a file, a command's standard output (``pass show ...``, ``sops -d ...``,
``ansible-vault view ...``) or an environment variable.

The value is held in a Value, whose repr is redacted (a traceback, a log
line or a debugger never shows it) and which is wiped once it is sealed.
Python cannot promise that no copy of the bytes is left in the heap: wiping
shortens the time, and nothing keeps a reference once a delivery is made.
A source that fails is one line naming the secret and why, never a value.
"""

import os
import subprocess
from pathlib import Path

from fruixops.errors import UserError
from fruixops.printable import printable_line

MAX_VALUE = 1 << 20          # bytes: the host's secrets tmpfs holds 16 MiB
COMMAND_TIMEOUT = 120        # seconds a secret's command may take


class Value:
    """A secret's bytes: never printed, wiped after use."""
    __slots__ = ("_data",)

    def __init__(self, data):
        self._data = bytearray(data)

    def __repr__(self):
        return "<secret value redacted>"

    __str__ = __repr__

    def __len__(self):
        return len(self._data)

    def bytes(self):
        return bytes(self._data)

    def wipe(self):
        for i in range(len(self._data)):
            self._data[i] = 0
        self._data = bytearray()


class SourceFailed(UserError):
    """A secret's source failed: that host's deploy fails with this line."""


def read(secret, environ=None):
    """The value of *secret* (a declare.Secret), or SourceFailed."""
    environ = os.environ if environ is None else environ
    what = f"secret {secret.name!r}"
    if secret.source == "env":
        if secret.what not in environ:
            raise SourceFailed(f"{what}: environment variable {secret.what} is not set",
                               where=secret.where)
        data = os.fsencode(environ[secret.what])
    elif secret.source == "file":
        path = Path(secret.base) / Path(secret.what).expanduser()
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_VALUE + 1)
        except OSError as exc:
            raise SourceFailed(f"{what}: cannot read {path}: {exc.strerror}",
                               where=secret.where) from None
    else:
        data = _command(secret, what)
    if len(data) > MAX_VALUE:
        raise SourceFailed(f"{what}: larger than {MAX_VALUE} bytes", where=secret.where)
    if not data:
        raise SourceFailed(f"{what}: its {secret.source} gave an empty value",
                           where=secret.where)
    return Value(data)


def _command(secret, what):
    try:
        proc = subprocess.run(["/bin/sh", "-c", secret.what], cwd=secret.base,
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{what}: its command did not finish within {COMMAND_TIMEOUT}s",
                           where=secret.where) from None
    except OSError as exc:
        raise SourceFailed(f"{what}: cannot run its command: {exc.strerror}",
                           where=secret.where) from None
    if proc.returncode != 0:
        # Its stderr's last line says why (stdout, where a value would be, never).
        lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = f": {printable_line(lines[-1])[:200]}" if lines else ""
        status = proc.returncode
        proc = None
        raise SourceFailed(f"{what}: its command exited with status {status}{why}",
                           where=secret.where)
    return proc.stdout


def read_all(secrets, environ=None):
    """[(Secret, Value)] for *secrets*; on a failure, those read so far are
    wiped before the error goes up."""
    out = []
    try:
        for s in secrets:
            out.append((s, read(s, environ)))
    except BaseException:
        wipe(out)
        raise
    return out


def wipe(resolved):
    for _, value in resolved:
        value.wipe()
