"""How to reach a host: one SSH connection (Fabric/paramiko) with the host key
checked, and commands run over channels of it with bulk stdin streamed.

This is the narrow seam between "what to do" and "how to reach the host": a
lab host and a real FreeBSD host differ only in the inventory's connection
variables. Unknown or changed host keys are refused, never added
(``hostkeys.py``).

A host may be hostile, so every exchange is bounded: connecting (host
variable ``connect_timeout``), each command and each answer of a receive
session (``command_timeout``: how long the host may take to answer once
it has our input, and how long it may stall reading it), each exchange that
only reads the host -- its status, plan's state, the receiver's version,
boot time, a manifest -- by a shorter ``query_timeout`` (``query()``,
``reading()``: a silent host must not hold ``inv status`` for the
minutes a receive may need), and what is kept
of each reply (``reply_limit_mib`` per stream; a host that says more fails
with one line and its channel is closed, so the controller's memory stays
flat whatever the host sends).
"""

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import paramiko
from fabric import Config, Connection

from fruixops.remote import hostkeys
from fruixops.remote.access import Access
from fruixops.errors import HostError, HostKeyError, HostUnreachable
from fruixops.printable import printable

CHUNK = 256 * 1024

# Defaults of the host variables that bound every exchange (README, "Host
# variables"): seconds to connect and authenticate; seconds a command may
# take once it has its input (or stall reading it); seconds an exchange that
# only reads may take (never more than command_timeout); MiB kept of one reply.
CONNECT_TIMEOUT = 10
COMMAND_TIMEOUT = 300
QUERY_TIMEOUT = 30
REPLY_LIMIT_MIB = 8
# A line of a receive session's dialogue is short ("ready PID", "generation N").
SESSION_LINE_LIMIT = 4096

# paramiko logs (with tracebacks) every connection its transport thread loses;
# during a reboot that is expected, and real failures reach us as exceptions.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False


class CommandTimeout(HostError):
    pass


class ReplyTooLarge(HostError):
    pass


class _NoCommonCipher(Exception):
    pass


_NOT_GCM = ["aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc", "aes256-cbc",
            "3des-cbc"]


@dataclass
class Result:
    status: int
    stdout: bytes
    stderr: bytes

    # Decoded with control characters escaped: whatever reads these may
    # print them (see printable.py); the raw bytes stay in stdout / stderr.
    @property
    def out(self):
        return printable(self.stdout.decode(errors="replace"))

    @property
    def err(self):
        return printable(self.stderr.decode(errors="replace"))

    def last_error_line(self):
        """The line that says why: the receiver's own (refused: / locked:)
        when it gave one, else the last line on stderr."""
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        own = [ln for ln in lines if ln.startswith(("refused: ", "locked: "))]
        if own:
            return own[-1]
        return lines[-1] if lines else f"exit status {self.status}"


class HostConnection:
    """An SSH connection to one inventory host."""

    def __init__(self, host, known_hosts=None, connect_timeout=None):
        self.host = host
        self.name = host.name
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout or host.var("connect_timeout", CONNECT_TIMEOUT)
        self.command_timeout = host.var("command_timeout", COMMAND_TIMEOUT)
        self.query_timeout = host.var("query_timeout", min(QUERY_TIMEOUT, self.command_timeout))
        # The limit of run()'s commands, and the host variable that sets it.
        self._limit = ("command_timeout", self.command_timeout)
        self.reply_limit = host.var("reply_limit_mib", REPLY_LIMIT_MIB) * 2**20
        self.conn = None
        self.bytes_sent = 0
        self._counting = threading.Lock()
        self.access = Access(host)
        # The controller whose signing key may update the receiver through a
        # restricted access (set by deploy.connect).
        self.controller = None

    def count_sent(self, n):
        """Count bytes sent to the host (channels send from several threads)."""
        with self._counting:
            self.bytes_sent += n

    def receiver(self, *args):
        """The command line running receiver command *args* on this host."""
        return self.access.receiver(*args)

    # -- connecting ----------------------------------------------------------

    def open(self):
        # AES-GCM first: the fastest cipher paramiko has (about 15% over
        # AES-CTR here). A server without it gets paramiko's defaults.
        try:
            return self._open({"ciphers": _NOT_GCM})
        except _NoCommonCipher:
            return self._open({})

    def _open(self, disabled):
        h = self.host
        hostkeys.check_address(h)
        # Every step of connecting is bounded: TCP (connect_timeout below),
        # the server's banner, authentication, opening a channel.
        limit = self.connect_timeout
        kwargs = {"allow_agent": False, "look_for_keys": False, "disabled_algorithms": disabled,
                  "banner_timeout": limit, "auth_timeout": limit, "channel_timeout": limit}
        if h.var("ssh_key"):
            kwargs["key_filename"] = os.path.expanduser(h.var("ssh_key"))
        else:
            kwargs.update(allow_agent=True, look_for_keys=True)
        conn = Connection(host=h.ssh_host, user=h.var("ssh_user"), port=h.var("ssh_port"),
                          connect_timeout=limit, connect_kwargs=kwargs,
                          config=Config(), gateway=False)
        self._check_host_keys(conn)
        pinned = h.var("ssh_host_key")
        if pinned:
            hostkeys.pin(conn.client, conn.host, conn.port, pinned, self.name)
        # A bastion (ProxyJump): the inventory's ssh_proxy_jump, else
        # ~/.ssh/config's for this address. Fabric would make the hops itself,
        # adding unknown host keys; here each hop's key is checked as strictly.
        jump = h.var("ssh_proxy_jump") or conn.ssh_config.get("proxyjump")
        hops = []
        if jump and jump.lower() != "none":
            for spec in jump.split(","):
                hops.append(Connection(spec.strip(), connect_timeout=limit, connect_kwargs=kwargs,
                                       config=Config(), gateway=hops[-1] if hops else False))
                self._check_host_keys(hops[-1])
            conn.gateway = hops[-1]
            conn.open_gateway = lambda: _HopChannel(hops[-1].transport.open_channel(
                "direct-tcpip", (conn.host, int(conn.port)), ("", 0)))
        elif conn.ssh_config.get("proxycommand"):
            conn.gateway = conn.ssh_config["proxycommand"]    # the host's key is still checked
        # Each hop opened on its own, so that an error names the hop it is about.
        for hop in hops + [conn]:
            what = _addr(hop) if hop is conn else f"the bastion {_addr(hop)} (ProxyJump)"
            try:
                self._connect(hop, what, disabled)
            except BaseException:
                for opened in hops:
                    opened.close()
                raise
        conn.transport.set_keepalive(15)
        # Small request/answer exchanges otherwise stall on Nagle + delayed ACK
        # (about 40 ms a round trip).
        try:
            conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass        # not a TCP socket (a ProxyJump channel): nothing to tune
        self.conn = conn
        return self

    def _connect(self, conn, what, disabled):
        """Open *conn* (the host, or a bastion on the way: *what* names it),
        every failure one line."""
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(self.name, f"SSH host key CHANGED for {what} "
                               f"(got {exc.key.get_name()} {exc.key.fingerprint}); refusing. "
                               "If the host was reinstalled, update known_hosts or ssh_host_key"
                               ) from None
        except paramiko.ssh_exception.IncompatiblePeer:
            conn.close()
            if disabled:
                raise _NoCommonCipher() from None
            raise HostUnreachable(self.name, f"SSH to {what}: no common algorithms") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(self.name, f"unknown SSH host key for {what}; "
                                   "refusing. Add it to known_hosts or pin ssh_host_key "
                                   "in the inventory") from None
            raise HostUnreachable(self.name, f"SSH to {what} failed: {exc}") from None
        except (OSError, socket.timeout, EOFError) as exc:
            raise HostUnreachable(self.name, f"cannot reach {what}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None

    def _check_host_keys(self, conn):
        """Fabric auto-adds unknown host keys; we never do (on every hop)."""
        hostkeys.refuse_unknown(conn.client, self.known_hosts)

    def close(self):
        if self.conn is not None:
            gateway = self.conn.gateway
            self.conn.close()
            while isinstance(gateway, Connection):
                gateway.close()
                gateway = gateway.gateway
            self.conn = None

    def __enter__(self):
        return self.open() if self.conn is None else self

    def __exit__(self, *exc):
        self.close()

    # -- running -------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self):
        """The commands run in this block only read the host: each is bounded
        by query_timeout instead of command_timeout."""
        with self._bounded_by("query_timeout", self.query_timeout):
            yield self

    @contextlib.contextmanager
    def working(self):
        """The commands run in this block change the host (installing the
        receiver inside a read, say): command_timeout bounds them again."""
        with self._bounded_by("command_timeout", self.command_timeout):
            yield self

    @contextlib.contextmanager
    def _bounded_by(self, name, seconds):
        saved, self._limit = self._limit, (name, seconds)
        try:
            yield
        finally:
            self._limit = saved

    def query(self, command, stdin=None, timeout=None):
        """run() a command that only reads the host (bounded by query_timeout)."""
        with self.reading():
            return self.run(command, stdin=stdin, timeout=timeout)

    def run(self, command, stdin=None, progress=None, timeout=None):
        """Run *command* on the host; feed it *stdin* (bytes or an iterable of
        byte chunks) while draining its output. Returns a Result.

        A dropped connection raises HostUnreachable. Once its input is sent,
        the command has *timeout* seconds (default: the host's
        command_timeout, or query_timeout inside reading()) to finish, and
        while its input is sent it may stall reading it no longer than that:
        past either, its channel is closed and CommandTimeout raised. A reply
        over the host's reply_limit_mib closes the channel too and raises
        ReplyTooLarge."""
        limit, default = self._limit
        timeout = default if timeout is None else timeout
        transport, chan = self._exec(command)
        chan.settimeout(timeout)      # bounds each wait of sendall for the host
        out, err = _Reply(self.reply_limit, chan), _Reply(self.reply_limit, chan)
        readers = [threading.Thread(target=out.drain, args=(chan.recv,), daemon=True),
                   threading.Thread(target=err.drain, args=(chan.recv_stderr,), daemon=True)]
        for t in readers:
            t.start()
        send_error = None
        try:
            if stdin is not None:
                chunks = [stdin] if isinstance(stdin, (bytes, bytearray)) else stdin
                for chunk in chunks:
                    if chan.exit_status_ready() or chan.closed:
                        break   # the host stopped reading; its stderr says why
                    # A view: paramiko slices what is left after each packet,
                    # which copies the rest of a bytes chunk every 32 KiB.
                    chan.sendall(memoryview(chunk))
                    self.count_sent(len(chunk))
                    if progress:
                        progress(len(chunk))
        except socket.timeout:
            chan.close()
            raise CommandTimeout(self.name, f"the host stopped reading its input for "
                                 f"{timeout}s ({limit})") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            send_error = exc
        finally:
            try:
                chan.shutdown_write()
            except (OSError, EOFError):
                pass
        deadline = time.monotonic() + timeout
        for t in readers:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                chan.close()
                raise CommandTimeout(self.name, f"no complete answer within {timeout}s "
                                     f"({limit})")
        self._check_size(out, err)
        status = chan.recv_exit_status()
        try:
            chan.close()
        except (OSError, paramiko.SSHException, EOFError):
            status = -1      # the connection went while the command ended
        if status == -1 or (send_error and not transport.is_active()):
            raise HostUnreachable(self.name, "connection lost during a command")
        return Result(status, out.data(), err.data())

    def _check_size(self, *replies):
        if any(r.over for r in replies):
            raise ReplyTooLarge(self.name, f"reply larger than {self.reply_limit // 2**20} MiB "
                                "(reply_limit_mib); refused")

    def session(self, command):
        """Start *command* and talk with it line by line (see Session)."""
        return Session(self, self._exec(command)[1])

    def _exec(self, command):
        """A new channel of this connection running *command*."""
        transport = self.conn.transport if self.conn else None
        if transport is None or not transport.is_active():
            raise HostUnreachable(self.name, "connection lost")
        limit = self._limit[1]
        try:
            chan = transport.open_session(timeout=limit)
            # paramiko waits for the answer to an exec request without limit.
            guard = threading.Timer(limit, chan.close)
            guard.daemon = True
            guard.start()
            try:
                chan.exec_command(command)
            finally:
                guard.cancel()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(self.name, f"cannot start a command: {exc}") from None
        return transport, chan

    def check(self, command, stdin=None, progress=None):
        """run(), raising HostError with the host's own last line on failure."""
        result = self.run(command, stdin=stdin, progress=progress)
        if result.status != 0:
            raise HostError(self.name, result.last_error_line())
        return result


class Session:
    """A command on the host that the controller talks with: send bytes,
    read answer lines as they come, then finish() for the Result. Each
    answer is awaited at most command_timeout seconds; a line may not
    exceed SESSION_LINE_LIMIT bytes."""

    def __init__(self, hc, chan):
        self.hc, self.chan = hc, chan
        self.timeout = hc.command_timeout
        chan.settimeout(self.timeout)
        self.buffer = b""
        self.err = _Reply(hc.reply_limit, chan)
        self.err_reader = threading.Thread(target=self.err.drain, args=(chan.recv_stderr,),
                                           daemon=True)
        self.err_reader.start()

    def send(self, data):
        try:
            self.chan.sendall(data)
        except socket.timeout:
            self._timed_out("stopped reading")
        except (OSError, paramiko.SSHException, EOFError):
            return False       # the host stopped listening; finish() says why
        self.hc.count_sent(len(data))
        return True

    def readline(self):
        """The next line the host prints, or None when it printed its last."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > SESSION_LINE_LIMIT:
                self.chan.close()
                raise ReplyTooLarge(self.hc.name, f"an answer line longer than "
                                    f"{SESSION_LINE_LIMIT} bytes; refused")
            try:
                data = self.chan.recv(CHUNK)
            except socket.timeout:
                self._timed_out("did not answer")
            except (OSError, EOFError):
                data = b""
            if not data:
                line, self.buffer = self.buffer, b""
                return _line(line) if line else None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return _line(line)

    def finish(self):
        """Close our side and wait for the command; returns its Result."""
        try:
            self.chan.shutdown_write()
        except (OSError, EOFError):
            pass
        out = _Reply(self.hc.reply_limit, self.chan)
        out.keep(self.buffer)
        reader = threading.Thread(target=out.drain, args=(self.chan.recv,), daemon=True)
        reader.start()
        deadline = time.monotonic() + self.timeout
        for t in (reader, self.err_reader):
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self._timed_out("did not finish")
        self.hc._check_size(out, self.err)
        status = self.chan.recv_exit_status()
        self.chan.close()
        if status == -1:
            raise HostUnreachable(self.hc.name, "connection lost during a command")
        return Result(status, out.data(), self.err.data())

    def _timed_out(self, what):
        self.chan.close()
        raise CommandTimeout(self.hc.name, f"the receiver {what} within {self.timeout}s "
                             "(command_timeout)")


def _line(raw):
    return printable(raw.decode(errors="replace"))


class _HopChannel:
    """The channel through a bastion that the host's SSH transport uses as
    its socket. When the host reboots, that transport's thread closes it
    after the bastion's side may have gone; paramiko then raises EOFError in
    its thread. Closing a channel that is already gone is nothing to report."""

    def __init__(self, chan):
        self._chan = chan

    def close(self):
        try:
            self._chan.close()
        except (EOFError, OSError, paramiko.SSHException):
            pass

    def __getattr__(self, name):
        return getattr(self._chan, name)


class _Reply:
    """One output stream of a command, kept up to *limit* bytes. Past it,
    the rest is refused: the channel is closed (the host cannot make us
    hold more) and ``over`` is set."""

    def __init__(self, limit, chan):
        self.limit, self.chan = limit, chan
        self.chunks, self.size, self.over = [], 0, False

    def keep(self, data):
        self.size += len(data)
        if self.size > self.limit:
            self.over = True
            self.chunks = []
            self.chan.close()
            return False
        self.chunks.append(data)
        return True

    def drain(self, recv):
        while True:
            try:
                data = recv(CHUNK)
            except socket.timeout:
                continue         # the caller keeps the time; we just wait on
            except (OSError, EOFError):
                return
            if not data or not self.keep(data):
                return

    def data(self):
        return b"".join(self.chunks)


def _addr(conn):
    return f"{conn.host}:{conn.port}"


def connect(ctl, host):
    """An open HostConnection to *host* for controller *ctl* (its known_hosts;
    its signing key updates a receiver behind a restricted key)."""
    hc = HostConnection(host, ctl.inventory.settings.known_hosts)
    hc.controller = ctl     # its signing key updates a receiver behind a restricted key
    return hc.open()
