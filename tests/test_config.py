"""Host configuration on the controller (fruixops.system.config): declarations
checked with file and line, dictionaries merged across groups, the same
declarations giving the same system path (and any change another), values
that look like private keys refused, uids stable in the ledger, diffs."""

import textwrap

import pytest

from fruixops.inventory import model as inventory
from fruixops.system.build import Builder
from fruixops.system.config import diff as cdiff, ids, render
from fruixops.errors import UserError
from fruixops.system.services import declare as services

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjIZqYJy8VnqjrK2Q7Gi3UqlOpS3gTvtbPZ0Op0e6cH a@b"


def project(tmp_path, host_vars="", group_vars="", all_vars=""):
    (tmp_path / "tree" / "bin").mkdir(parents=True, exist_ok=True)
    (tmp_path / "tree" / "bin" / "sh").write_text("#!/bin/sh\n")
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "motd.j2").write_text("Welcome to {{ inventory_hostname }}, "
                                                    "{{ site }}\n")
    inv = tmp_path / "inv.yaml"
    ind = lambda text, n: textwrap.indent(text, " " * n)  # noqa: E731
    inv.write_text(
        "fruixops: {store: ./store, lab: false, ids: ./ids.json}\n"
        "bases:\n"
        "  b1: {version_label: L1, release: R, branch: B, source: {tree: {path: ./tree}}}\n"
        "all:\n"
        "  vars:\n"
        "    base: b1\n"
        "    site: paris\n" + ind(all_vars, 4) +
        "  children:\n"
        "    web:\n"
        "      vars:\n" + ind(group_vars or "site: paris\n", 8) +
        "      hosts:\n"
        "        h1:\n" + ind(host_vars or "site: paris\n", 10))
    return inv


def system_path(inv_path, store):
    inv = inventory.load(inv_path)
    host = inv.host("h1")
    b = Builder(store, inventory=inv)
    return b.system_path(host, inv.base_for(host))[0], b, host, inv


def test_same_declarations_same_path_and_any_change_another(tmp_path):
    decl = ("files: {/etc/motd: {template: motd.j2}, /etc/issue: {content: hi}}\n"
            "rc_conf: {a_flags: '-x', b_enable: true}\nsysctl: {kern.x: 1}\n"
            f"users: [{{name: alice, authorized_keys: ['{KEY}']}}]\n")
    first, *_ = system_path(project(tmp_path / "a" / "fleet", decl), tmp_path / "s1")
    # The same declarations, keys in another order, another checkout, another store.
    reordered = ("sysctl: {kern.x: 1}\nrc_conf: {b_enable: true, a_flags: '-x'}\n"
                 f"users: [{{name: alice, authorized_keys: ['{KEY}']}}]\n"
                 "files: {/etc/issue: {content: hi}, /etc/motd: {template: motd.j2}}\n")
    import shutil
    (tmp_path / "b" / "fleet").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "fleet" / "ids.json", tmp_path / "b" / "fleet" / "ids.json")
    second, *_ = system_path(project(tmp_path / "b" / "fleet", reordered), tmp_path / "s2")
    assert first == second
    # A change of the template's output (a variable it uses) is another system.
    shutil.copytree(tmp_path / "b" / "fleet", tmp_path / "c" / "fleet")
    third, *_ = system_path(project(tmp_path / "c" / "fleet", decl.replace("hi", "hello")),
                            tmp_path / "s3")
    assert third != first
    (tmp_path / "a" / "fleet" / "templates" / "motd.j2").write_text("Bienvenue\n")
    assert system_path(tmp_path / "a" / "fleet" / "inv.yaml", tmp_path / "s1")[0] != first


def test_built_system_carries_the_configuration(tmp_path):
    inv_path = project(tmp_path, "files: {/etc/motd: {template: motd.j2, mode: '0600'}}\n"
                                 "rc_conf: {ntpd_sync_on_start: true}\n"
                                 "loader_tunables: {kern.ipc.nmbclusters: 262144}\n")
    _, b, host, inv = system_path(inv_path, tmp_path / "store")
    item = b.build_system(host, inv.base_for(host))
    cfg = cdiff.from_store(b.store, item.path)
    assert cfg.contents["/etc/motd"] == b"Welcome to h1, paris\n"
    assert cfg.files["/etc/motd"][:3] == ("0600", "root", "wheel")
    assert cfg.rc_conf["ntpd_sync_on_start"] == '"YES"'
    assert cfg.loader_tunables == 'kern.ipc.nmbclusters="262144"\n'


def test_dictionaries_merge_key_by_key_across_groups(tmp_path):
    inv = inventory.load(project(
        tmp_path, host_vars="rc_conf: {b: host, c: ~}\nsysctl: {k.x: 2}\n",
        group_vars="rc_conf: {a: group, b: group, c: group}\nsysctl: {k.y: 1}\n",
        all_vars="rc_conf: {z: all}\n"))
    h = inv.host("h1")
    assert h.var("rc_conf") == {"z": "all", "a": "group", "b": "host"}
    assert h.var("sysctl") == {"k.y": 1, "k.x": 2}


@pytest.mark.parametrize("host_vars, message", [
    ("files: {/etc/x: {content: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nabc\"}}",
     "looks like a private key"),
    ("rc_conf: {k: '-----BEGIN PRIVATE KEY-----'}", "looks like a private key"),
    ("files: {/etc/x: {content: a, mode: 644}}", "is not a file mode"),
    ("files: {/etc/../x: {content: a}}", "no . or .. parts"),
    ("files: {/frx/store/x: {content: a}}", "not a file fruixops manages"),
    ("files: {/etc/master.passwd: {content: a}}", "users: and groups: manage"),
    ("files: {/etc/x: {content: a, notify: nginx}}", "does not run as a service"),
    ("files: {/etc/x: {content: a, validate: 'true'}}", "with %s for the new file"),
    ("files: {/etc/x: {content: a, template: b}}", "exactly one of template, src or content"),
    ("files: {/etc/x: {templat: a}}", "did you mean 'template'"),
    ("files: {/etc/x: {template: nothere.j2}}", "no template 'nothere.j2'"),
    ("rc_conf: {sshd_enable: 'YES'}", "shepherd supervises sshd"),
    ("loader_tunables: {init_exec: /bin/sh}", "fruixops sets itself"),
    ("loader_tunables: {kern.x: '$y'}", "the loader expands them"),
    ("users: [{name: alice, password: secret}]", "no password in the configuration"),
    ("users: [{name: alice, authorized_keys: [not-a-key]}]", "not an OpenSSH public key"),
    ("users: [{name: a}, {name: a}]", "declared twice"),
    ("cron: {x: {minute: '61;rm', job: /bin/true}}", "not a crontab field"),
    ("timezone: Europe/Pariss", "did you mean 'Europe/Paris'"),
    ("resolv_conf: {nameservers: [a, b, c, d]}", "at most 3"),
])
def test_refused_with_the_inventory_file_and_line(tmp_path, host_vars, message):
    inv = inventory.load(project(tmp_path, host_vars + "\n"))
    h = inv.host("h1")
    with pytest.raises(UserError) as err:
        render.render(h, inv, services.services_of(h))
    assert message in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'inv.yaml'}:")


def test_lab_hosts_may_only_manage_their_own_trees(tmp_path):
    path = project(tmp_path, "files: {/usr/share/x: {content: a}}\n")
    path.write_text(path.read_text().replace("lab: false", "lab: true"))
    inv = inventory.load(path)
    with pytest.raises(UserError, match="a lab host has its own"):
        render.render(inv.host("h1"), inv, services.services_of(inv.host("h1")))


def test_ids_are_assigned_once_and_kept(tmp_path):
    ledger = ids.Ledger(tmp_path / "ids.json")
    assert ledger.assign("users", "bob", None, ()) == 1001
    ledger.save()
    again = ids.Ledger(tmp_path / "ids.json")
    # aaron sorts before bob, and comes later: bob keeps his number.
    assert again.assign("users", "aaron", None, ()) == 1002
    assert again.assign("users", "bob", None, ()) == 1001
    assert again.assign("users", "carol", 2000, ()) == 2000
    assert again.assign("users", "dave", None, ()) == 1003


def test_compare_gives_unified_diffs_and_the_services_to_restart():
    old = cdiff.SystemConfig(files={"/etc/a": ("0644", "root", "wheel", "1", "-")},
                             contents={"/etc/a": b"x = 1\ny = 2\n"},
                             services={"sshd": "k1", "tick": "k2", "gone": "k3"},
                             rc_conf={"a": '"1"'})
    new = cdiff.SystemConfig(files={"/etc/a": ("0644", "root", "wheel", "2", "-"),
                                    "/etc/b": ("0600", "root", "wheel", "3", "-")},
                             contents={"/etc/a": b"x = 1\ny = 3\n", "/etc/b": b"new\n"},
                             services={"sshd": "k1", "tick": "k9", "fresh": "k4"},
                             rc_conf={"a": '"2"', "b": '"x"'})
    ch = cdiff.compare(old, new)
    files = {p: (k, d) for p, k, d in ch.files}
    assert files["/etc/a"][0] == "changed" and "-y = 2\n+y = 3\n" in files["/etc/a"][1]
    assert files["/etc/b"][0] == "added" and "+new" in files["/etc/b"][1]
    assert ch.restart == ["tick"] and ch.start == ["fresh"] and ch.stop == ["gone"]
    assert ch.rc_conf == [("a", '"1"', '"2"'), ("b", None, '"x"')]
    assert cdiff.compare(new, new).empty


def test_plan_names_a_secret_whose_version_or_place_changes_never_its_value(tmp_path):
    import io
    import tarfile

    def system(lines):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = ("# head\n" + "".join(f"{ln}\n" for ln in lines)).encode()
            info = tarfile.TarInfo("./config/secrets")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return cdiff.from_tar(buf.getvalue())
    old = system(["db 1 /var/run/fruix/secrets/db root - 0400"])
    new = system(["db 2 /var/run/fruix/secrets/db root - 0400",
                  "tls 1 /usr/local/etc/ssl/key.pem www www 0440"])
    ch = cdiff.compare(old, new)
    assert [n for n, _, _ in ch.secrets] == ["db", "tls"]
    text = "\n".join(cdiff.format_change(ch))
    assert "secret db: version 1 at /var/run/fruix/secrets/db (0400 root:-) -> version 2" in text
    assert "secret tls: (none) -> version 1 at /usr/local/etc/ssl/key.pem (0440 www:www)" in text
