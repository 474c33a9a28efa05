"""The lab's item cache: a real nginx on 127.0.0.1 serving the directory
`inv cache.push` uploads to, as a web server or a CDN edge would serve a
fleet's cache. It runs when the lab inventory names a cache whose URL is on
127.0.0.1 and whose upload target is a local directory; `inv lab.up` starts
it and `inv lab.down` stops it. Debian's nginx-light (scripts/system-deps)."""

import os
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from fruixops.lab import sshd
from fruixops.lab.link import GATEWAY
from fruixops.errors import UserError

NGINX = "/usr/sbin/nginx"
# Where nginx sees the cache, in its own mount namespace (a tmpfs over /run
# there: nothing of the machine's /run is needed by it).
SERVED = "/run/cache"

CONF = """\
# The lab's cache server (fruixops.lab.webcache): written by `inv lab.up`.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {{
        listen {host}:{port};
        root {root};
        autoindex off;
        location / {{ limit_except GET {{ deny all; }} }}
    }}
}}
"""


class WebCache:
    """nginx serving *root* on *host*:*port* (127.0.0.1, or the gateway of
    hosts behind shaped links: link.GATEWAY); its files under *prefix*."""

    def __init__(self, prefix, root, port, host="127.0.0.1"):
        self.prefix, self.root, self.port, self.host = Path(prefix), Path(root), port, host

    @classmethod
    def of(cls, lab):
        """The lab's cache server, or None when its inventory names no cache
        the lab can serve (an http URL on 127.0.0.1, a local upload directory)."""
        cache = lab.inventory.settings.cache
        if not cache or not cache.upload or cache.upload.startswith("ssh:"):
            return None
        url = urlsplit(cache.url)
        if url.scheme != "http" or url.hostname not in ("127.0.0.1", GATEWAY) or not url.port:
            return None
        return cls(lab.root / "nginx", cache.upload, url.port, url.hostname)

    def pid(self):
        try:
            pid = int((self.prefix / "nginx.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if sshd.alive(pid) else None

    def up(self):
        if self.pid():
            return
        if not os.access(NGINX, os.X_OK) and not shutil.which("nginx"):
            raise UserError("the lab's cache needs nginx (apt-get install nginx-light, or: "
                            "make sysdeps)")
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(CONF.format(prefix=self.prefix, root=SERVED, port=self.port,
                                    host=self.host))
        # Workers run as nginx's unprivileged user: the cache is readable by
        # anyone, as a served directory is. nginx runs in a mount namespace
        # of its own where the cache is bound at SERVED, so that the
        # directories above the checkout (/root is 0700) need no change:
        # the lab never touches the machine's own files.
        mode = self.root.stat().st_mode
        os.chmod(self.root, mode | 0o005)
        nginx = shutil.which("nginx") or NGINX
        started = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o mode=0755 lab-cache "$1" && mkdir "$1/cache" && '
             'mount --bind "$2" "$1/cache" && shift 2 && exec "$@"',
             "sh", str(Path(SERVED).parent), str(self.root),
             nginx, "-c", str(conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log")],
            capture_output=True, text=True)
        if started.returncode != 0:
            raise UserError(f"the lab's cache server did not start: "
                            f"{(started.stderr or started.stdout).strip()[-300:]}")
        # nginx listens before it returns (it binds, then daemonizes).

    def down(self):
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            sshd.wait_gone(pid, 10)
