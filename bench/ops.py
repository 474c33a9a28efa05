"""Figure 9: fleet operations against Ansible on N lab hosts, the same
forks: `inv status --limit all` against `ansible all -m ping`, and a no-op
`inv deploy --limit all` against `ansible all -m command -a true`
(ansible-core from the venv, the lab hosts' own Python, its defaults: SSH
multiplexing with ControlPersist). Wall time and the controller's CPU
seconds (each command and all its children: ssh, forks) per host."""

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness import BENCH, ROOT, Harness, fleet_inventory, log, median
from fruixops.rollout import fleet
from fruixops.controller import Controller
from fruixops.rollout.events import Events

HOSTS, PORT0, FORKS = 30, 32101, 10
BIN = Path(sys.executable).parent


def ansible_inventory(inv, path):
    """The same hosts for Ansible: address, port, key, known hosts."""
    lines = ["[all]"]
    for h in inv.hosts.values():
        lines.append(f"{h.name} ansible_host={h.ssh_host} ansible_port={h.var('ssh_port')}")
    first = next(iter(inv.hosts.values()))
    lines += ["", "[all:vars]", "ansible_user=root",
              f"ansible_ssh_private_key_file={first.var('ssh_key')}",
              "ansible_python_interpreter=/usr/bin/python3",
              "ansible_ssh_common_args='-o UserKnownHostsFile="
              f"{inv.settings.known_hosts} -o StrictHostKeyChecking=yes'", ""]
    path.write_text("\n".join(lines))
    return path


def timed(argv, env, cwd):
    """(wall seconds, CPU seconds of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}: exit {r.returncode}: "
                           f"{(r.stderr or r.stdout)[-400:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


class Ops:
    def ops(self, base="fleet", n=HOSTS, forks=FORKS):
        inv = fleet_inventory("bench-ops.yaml", n, PORT0)
        ob = Harness(inv, self.runs)
        hosts = list(ob.inv.hosts.values())
        ansible_dir = BENCH / "ansible"
        ansible_dir.mkdir(exist_ok=True)
        ini = ansible_inventory(ob.inv, ansible_dir / "hosts.ini")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ANSIBLE_HOME": str(ansible_dir),
               "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1"}
        cmds = {
            "status": [str(BIN / "inv"), "status", "--limit", "all", "--inventory", str(inv),
                       "--forks", str(forks)],
            "ping": [str(BIN / "ansible"), "all", "-i", str(ini), "-m", "ping",
                     "-f", str(forks)],
            "noop_deploy": [str(BIN / "inv"), "deploy", "--limit", "all", "--inventory",
                            str(inv), "--forks", str(forks)],
            "command_true": [str(BIN / "ansible"), "all", "-i", str(ini), "-m", "command",
                             "-a", "true", "-f", str(forks)]}
        got = {k: [] for k in cmds}
        try:
            ob.bare(*[h.name for h in hosts])
            outcomes, _ = fleet.deploy_many(Controller(inv), hosts, base, forks=forks,
                                            events=Events())
            assert outcomes.exit_status() == 0
            for i in range(max(self.runs, 5)):      # short runs: 5 for a steadier median
                order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
                for k in order:
                    got[k].append(timed(cmds[k], env, ROOT))
                log(f"ops run {i + 1} ({n} hosts, forks {forks}): " + ", ".join(
                    f"{k} {got[k][-1][0]:.2f}s ({got[k][-1][1]:.1f} CPU s)" for k in cmds))
        finally:
            ob.lab.down(hosts)
        out = {"hosts": n, "forks": forks}
        for k in cmds:
            out[k] = {"wall_s": median([w for w, _ in got[k]]),
                      "cpu_s_per_host": median([c for _, c in got[k]]) / n}
        out["status_ratio"] = out["ping"]["wall_s"] / out["status"]["wall_s"]
        out["deploy_ratio"] = out["command_true"]["wall_s"] / out["noop_deploy"]["wall_s"]
        self.results["ops"] = out


if __name__ == "__main__":
    import run
    run.main(["--family", "fleet", "--figures", "ops", *sys.argv[1:]])
