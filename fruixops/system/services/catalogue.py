"""The FreeBSD services fruixops knows, as GNU Shepherd must run them.

A supervisor sees a daemon that forks into the background as a process that
exited at once: every command here keeps the daemon in the foreground, as
its own manual page says to (the flag is named beside it). Paths are
FreeBSD's: base system daemons under /usr/sbin and /sbin, packages under
/usr/local. ``rc`` is the rc.d script that would start the daemon at boot
(its ``<rc>_enable`` is set to "NO" in the system's rc.conf, so rc never
starts what shepherd supervises).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str                    # shepherd's provision, one word
    command: tuple               # argv, the daemon in the foreground
    rc: str | None = None        # the rc.d script (rc.conf's <rc>_enable) it replaces
    requires: tuple = ()         # services started before it
    user: str | None = None
    group: str | None = None
    config: tuple = ()           # files it reads (for people, and diffs)
    respawn: bool = True
    respawn_limit: tuple | None = None   # (times, seconds); None: shepherd's default
    environment: tuple = ()      # "NAME=value" strings
    doc: str = ""
    where: str = ""              # the declaration (file:line:col), for errors


def _s(name, command, rc, doc, **kw):
    return Service(name, tuple(command), rc, doc=doc, **kw)


CATALOGUE = {s.name: s for s in (
    _s("sshd", ["/usr/sbin/sshd", "-D"], "sshd",
       "OpenSSH server (sshd(8) -D: do not detach)", config=("/etc/ssh/sshd_config",)),
    _s("ntpd", ["/usr/sbin/ntpd", "-n", "-g", "-c", "/etc/ntp.conf",
                "-f", "/var/db/ntp/ntpd.drift"], "ntpd",
       "NTP daemon (ntpd(8) -n: do not fork; -g: allow the first big step)",
       config=("/etc/ntp.conf",)),
    _s("cron", ["/usr/sbin/cron", "-n"], "cron",
       "cron daemon (cron(8) -n: do not daemonize)", config=("/etc/crontab", "/etc/cron.d")),
    _s("syslogd", ["/usr/sbin/syslogd", "-F", "-s"], "syslogd",
       "system log daemon (syslogd(8) -F: stay in the foreground; -s: no network input)",
       config=("/etc/syslog.conf", "/etc/syslog.d")),
    _s("devd", ["/sbin/devd", "-d"], "devd",
       "device state change daemon (devd(8) -d: stay in the foreground)",
       config=("/etc/devd.conf",)),
    _s("powerd", ["/usr/sbin/powerd", "-f"], "powerd",
       "CPU power management (powerd(8) -f: stay in the foreground)"),
    _s("local_unbound", ["/usr/sbin/local-unbound", "-d", "-c", "/var/unbound/unbound.conf"],
       "local_unbound", "base system's caching resolver (unbound(8) -d: do not fork)",
       config=("/var/unbound/unbound.conf",)),
    _s("unbound", ["/usr/local/sbin/unbound", "-d", "-c", "/usr/local/etc/unbound/unbound.conf"],
       "unbound", "Unbound DNS resolver, from packages (unbound(8) -d: do not fork)",
       config=("/usr/local/etc/unbound/unbound.conf",)),
    _s("nginx", ["/usr/local/sbin/nginx", "-g", "daemon off;"], "nginx",
       "nginx web server, from packages (daemon off: stay in the foreground)",
       config=("/usr/local/etc/nginx/nginx.conf",)),
    _s("postgresql", ["/usr/local/bin/postgres", "-D", "/var/db/postgres/data16"], "postgresql",
       "PostgreSQL 16 server, from packages (postgres runs in the foreground)",
       user="postgres", group="postgres", config=("/var/db/postgres/data16/postgresql.conf",)),
    _s("redis", ["/usr/local/bin/redis-server", "/usr/local/etc/redis.conf",
                 "--daemonize", "no"], "redis",
       "Redis, from packages (--daemonize no)", user="redis", group="redis",
       config=("/usr/local/etc/redis.conf",)),
    _s("haproxy", ["/usr/local/sbin/haproxy", "-db", "-f", "/usr/local/etc/haproxy.conf"],
       "haproxy", "HAProxy, from packages (-db: no background)",
       config=("/usr/local/etc/haproxy.conf",)),
)}
