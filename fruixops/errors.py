"""Errors a user can cause, each with its documented exit status.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_status``;
anything that is not a ``FruixopsError`` is a bug and keeps its traceback.
"""

from fruixops.printable import printable_line

# Exit statuses (documented in the README).
EXIT_OK = 0
EXIT_BUG = 1
EXIT_FAILED = 2        # bad input, or a host refused / failed the operation
EXIT_UNREACHABLE = 4   # a host could not be reached over SSH


class FruixopsError(Exception):
    exit_status = EXIT_FAILED


class UserError(FruixopsError):
    """Bad input: inventory, declaration, source, key, command-line argument."""

    def __init__(self, message, where=None):
        self.where = where  # "file:line:column" or a file name, when known
        super().__init__(f"{where}: {message}" if where else message)


class HostError(FruixopsError):
    """A host refused or failed an operation; the host names itself in the text.
    The text is one line, control characters escaped: it may quote the host."""

    def __init__(self, host, message):
        self.host = host
        super().__init__(printable_line(f"{host}: {message}"))


class HostUnreachable(HostError):
    exit_status = EXIT_UNREACHABLE


class HostKeyError(HostError):
    """Unknown or changed SSH host key: refused, never accepted silently."""
