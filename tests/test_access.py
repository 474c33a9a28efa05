"""Access modes (root, restricted key, doas/sudo) as the inventory declares
them, the authorized_keys line of a restricted key, and the receiver's
refusal of every command line that is not one of its own."""

import os
import subprocess

import pytest

from fruixops.remote import access
from fruixops.inventory import model as inventory
from fruixops.remote import receiver
from fruixops.errors import UserError


def _host(tmp_path, vars_yaml):
    path = tmp_path / "inv.yaml"
    path.write_text(f"all:\n  hosts:\n    h1: {vars_yaml}\n")
    return inventory.load(path).host("h1")


@pytest.mark.parametrize("vars_yaml,mode,line", [
    ("{}", "root", f"sh {receiver.PATH} status --esp /boot/efi"),
    ("{restricted_key: true}", "restricted", "status --esp /boot/efi"),
    ("{ssh_user: deploy, become: doas}", "become",
     f"doas -n {receiver.PATH} status --esp /boot/efi"),
    ("{ansible_user: deploy, ansible_become: true, ansible_become_method: doas}", "become",
     f"doas -n {receiver.PATH} status --esp /boot/efi"),
    ("{ansible_become: 'yes'}", "become", f"sudo -n {receiver.PATH} status --esp /boot/efi"),
    # Ansible applies a method only when become is on.
    ("{ansible_become_method: doas}", "root", f"sh {receiver.PATH} status --esp /boot/efi"),
    # Rendered, and read as Ansible's booleans.
    ("{ansible_become: \"{{ 'true' | trim }}\"}", "become",
     f"sudo -n {receiver.PATH} status --esp /boot/efi"),
    ("{ansible_become: ' Y '}", "become", f"sudo -n {receiver.PATH} status --esp /boot/efi"),
    ("{ansible_become: \"{{ 'off' }}\"}", "root", f"sh {receiver.PATH} status --esp /boot/efi"),
])
def test_access_modes_and_their_command_lines(tmp_path, vars_yaml, mode, line):
    a = access.Access(_host(tmp_path, vars_yaml))
    assert a.mode == mode
    assert a.receiver("status", "--esp", "/boot/efi") == line


@pytest.mark.parametrize("vars_yaml,error", [
    ("{become: su}", "become must be one of doas, sudo"),
    ("{become: doas, become_user: postgres}", "become_user must be root"),
    ("{ansible_become: true, ansible_become_user: postgres}", "become_user must be root"),
    ("{restricted_key: 'maybe'}", "must be true or false"),
    ("{ansible_become: maybe}", r"ansible_become must be true or false, not 'maybe'"),
    # Ansible's sudo reads ansible_sudo_user before ansible_become_user.
    ("{ansible_become: true, ansible_sudo_user: postgres, ansible_become_user: root}",
     "become_user must be root"),
])
def test_bad_access_variables_are_one_line_errors(tmp_path, vars_yaml, error):
    with pytest.raises(UserError, match=error):
        access.Access(_host(tmp_path, vars_yaml))


@pytest.mark.parametrize("word", ["a b", "x;id", "../etc", "$(id)", ""])
def test_a_restricted_key_carries_only_plain_words(tmp_path, word):
    a = access.Access(_host(tmp_path, "{restricted_key: true}"))
    with pytest.raises(UserError, match="cannot travel through a restricted key"):
        a.receiver("set-host-name", word)


def test_authorize_restricts_the_key_and_keeps_the_others():
    deploy_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDEPLOY deploy@ops"
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOTHER admin@ops"
    before = f"{other}\n{deploy_key}\ncommand=\"/bin/sh\" {deploy_key}\n"
    after = access.authorize(before, deploy_key)
    assert after.splitlines() == [
        other, f'restrict,command="{receiver.PATH} --ssh" {deploy_key}']
    assert access.authorize(after, deploy_key) == after       # idempotent
    with pytest.raises(UserError, match="not one OpenSSH public key"):
        access.public_key_line("-----BEGIN PUBLIC KEY-----\nMCow\n", "keys/lab.pub")


REFUSED = ["id", "", "status; id", "status $(id)", "status `id`", "status\nid", "status | id",
           "status && id", "set-host-name ../x", "check 1 ../../bin/sh", "manifest ../1",
           "frobnicate", "sh -c id", "status 'x'", "status\tid"]


@pytest.mark.parametrize("line", REFUSED)
def test_the_receiver_refuses_what_is_not_its_own_command(tmp_path, line):
    """Through a restricted key the receiver reads $SSH_ORIGINAL_COMMAND; it
    refuses with one line (exit 2) before any command runs. (Run here, on
    the controller: a refusal touches nothing, so nothing of this machine's
    is at stake.)"""
    program = tmp_path / "receiver"
    program.write_bytes(receiver.source())
    env = dict(os.environ, SSH_ORIGINAL_COMMAND=line, PATH="/usr/bin:/bin")
    if line == "":
        env.pop("SSH_ORIGINAL_COMMAND")
    r = subprocess.run(["sh", str(program), "--ssh"], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=30)
    assert r.returncode == 2, (line, r)
    assert r.stdout == "" and r.stderr.startswith("refused: ") and r.stderr.count("\n") == 1
