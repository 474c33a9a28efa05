"""The services a system's shepherd supervises: the catalogue's foreground
command lines, the operator's own declarations, and refusals at build time
naming the inventory's file and line. The configuration is read back by
Guile's own reader (the real parser a host's shepherd uses)."""

import shutil
import subprocess

import pytest

from fruixops.errors import UserError
from fruixops.system.services import catalogue, declare, shepherd


class Host:
    name, where = "web1", "inventories/x.yaml:3:5"

    def __init__(self, services):
        self.vars = {"services": services}
        self.var_where = {"services": "inventories/x.yaml:9:7"}

    def var(self, key, default=None):
        return self.vars.get(key, default)


def test_every_catalogued_daemon_stays_in_the_foreground():
    # The flag each daemon's manual page names for it (or its nature).
    foreground = {"sshd": "-D", "ntpd": "-n", "cron": "-n", "syslogd": "-F", "devd": "-d",
                  "powerd": "-f", "local_unbound": "-d", "unbound": "-d",
                  "nginx": "daemon off;", "redis": "no", "haproxy": "-db", "postgresql": "-D"}
    assert set(foreground) == set(catalogue.CATALOGUE)
    for name, flag in foreground.items():
        s = catalogue.CATALOGUE[name]
        assert flag in s.command, name
        assert s.command[0].startswith(("/usr/sbin/", "/sbin/", "/usr/local/")), name
    # Packages live under /usr/local on FreeBSD; base daemons do not.
    assert catalogue.CATALOGUE["nginx"].command[0] == "/usr/local/sbin/nginx"
    assert catalogue.CATALOGUE["sshd"].command == ("/usr/sbin/sshd", "-D")


@pytest.mark.parametrize("services, message", [
    (["sshdd"], "unknown service 'sshdd' (did you mean 'sshd'?)"),
    (["ngnix"], "did you mean 'nginx'?"),
    ([{"name": "app", "command": "myapp"}], "must be an absolute path"),
    ([{"name": "app"}], "give its command"),
    ([{"name": "app", "command": "/a", "requires": ["postgres"]}],
     "requires 'postgres', which this host does not declare"),
    ([{"name": "a", "command": "/a", "requires": ["b"]},
      {"name": "b", "command": "/b", "requires": ["a"]}], "cycle: a -> b -> a"),
    ([{"name": "nginx", "argz": []}], "unknown service field 'argz' (did you mean 'args'?)"),
    (["sshd", "sshd"], "declared twice"),
    ([{"name": "app", "command": "/a\n(system \"rm\")"}], "control character"),
    ([{"name": "App", "command": "/a"}], "needs a name"),
    ([{"name": "app", "command": "/a", "respawn_limit": [5]}], "respawn_limit"),
    ([42], "a service is a name or a mapping"),
])
def test_what_cannot_run_is_refused_at_build_time_with_file_and_line(services, message):
    with pytest.raises(UserError) as exc:
        declare.services_of(Host(services))
    assert message in str(exc.value)
    assert str(exc.value).startswith("inventories/x.yaml:9:7: ")


def test_declared_services_come_after_what_they_require():
    services = declare.services_of(Host([
        {"name": "app", "command": "/usr/local/bin/app", "requires": ["postgresql"]},
        "postgresql", "sshd"]))
    assert [s.name for s in services] == ["postgresql", "app", "sshd"]
    app = services[1]
    assert app.rc is None and app.respawn and app.command == ("/usr/local/bin/app",)


def test_a_catalogued_service_with_its_own_arguments():
    (nginx,) = declare.services_of(Host([{"name": "nginx", "args": ["-g", "daemon off;",
                                                                    "-c", "/etc/n.conf"]}]))
    assert nginx.command == ("/usr/local/sbin/nginx", "-g", "daemon off;", "-c", "/etc/n.conf")
    assert nginx.rc == "nginx"


def test_rc_never_starts_what_shepherd_supervises():
    services = declare.services_of(Host(["sshd", "cron",
                                         {"name": "app", "command": "/usr/local/bin/app"}]))
    lines = shepherd.rc_conf_lines(services)
    assert 'sshd_enable="NO"' in lines and 'cron_enable="NO"' in lines
    assert not [line for line in lines if line.startswith("app")]


def test_the_configuration_is_what_guile_reads():
    guile = shutil.which("guile") or shutil.which("guile-3.0")
    if not guile:
        pytest.fail("guile is missing: run `make test` (it installs guile-3.0)")
    services = declare.services_of(Host([
        "sshd", "nginx",
        {"name": "app", "command": "/usr/local/bin/app", "args": ['say "hi" \\ now'],
         "user": "www", "group": "www", "requires": ["nginx"], "respawn": False,
         "respawn_limit": [3, 10], "environment": {"LANG": "C.UTF-8"}}]))
    text = shepherd.config_scm(services, "web1", "inventories/x.yaml")
    # Guile's reader, then the data it read, written back as Guile sees it.
    program = """
    (use-modules (ice-9 pretty-print))
    (let loop ((form (read)))
      (unless (eof-object? form) (write form) (newline) (loop (read))))"""
    out = subprocess.run([guile, "--no-auto-compile", "-c", program], input=text,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "(use-modules (shepherd service))"
    assert out[-1] == "(start-in-the-background (quote (nginx app sshd)))"
    registered = out[1]
    assert registered.startswith("(register-services (list (service (quote (nginx))")
    assert '(make-forkexec-constructor (quote ("/usr/local/bin/app" "say \\"hi\\" \\\\ now"))' \
        ' #:user "www" #:group "www" #:environment-variables (quote ("LANG=C.UTF-8")))' \
        in registered
    assert "#:requirement (quote (nginx))" in registered
    assert "#:respawn? #f #:respawn-limit (quote (3 . 10))" in registered
    assert '(make-forkexec-constructor (quote ("/usr/sbin/sshd" "-D")))' in registered
