"""Hosts reachable only through a bastion: one bastion login per run, chains, and its errors.

Targets listen in a network namespace of their own (`tests.e2e.netns`), so
nothing on this machine's network reaches them; the bastion's sshd runs in
that namespace too and is reached through a relay. Logins are counted
from each sshd's own log.
"""

import socket
import subprocess
import textwrap

import pytest

from tests.e2e.conftest import explain
from tests.e2e.netns import NetNs, Relay
from tests.e2e.sshd import TEST_USER, Fleet, make_repo

FABFILE = '''
from fake.api import env
from fake.tasks.deploy import *

env.roledefs = {{'app': {hosts!r}}}
env.deploy_path = '/srv/app'
env.repo_url = {repo!r}
{extra}
'''


@pytest.fixture
def lab():
    """Makes namespaces, fleets and relays; stops them all (by PID, in reverse) at teardown."""
    made = []

    class Lab:
        def netns(self):
            made.append(NetNs())
            return made[-1]

        def fleet(self, n, names, **kwargs):
            made.append(Fleet(n, names=names, **kwargs))
            return made[-1]

        def relay(self, port, target_ns, listen_ns=None):
            made.append(Relay(port, target_ns, listen_ns))
            return made[-1]

    yield Lab()
    for thing in reversed(made):
        thing.close()


def host_entry(name, port, key, jump=None):
    return textwrap.dedent(f"""\
        Host {name}
            HostName 127.0.0.1
            Port {port}
            User {TEST_USER}
            IdentityFile {key}
            IdentitiesOnly yes
            StrictHostKeyChecking no
            UserKnownHostsFile /dev/null
        """) + (f"    ProxyJump {jump}\n" if jump else "") + "\n"


def setup_project(project, targets, extra=""):
    repo = project / "repo"
    make_repo(repo)
    names = [h.name for h in targets.hosts]
    (project / "fabfile.py").write_text(FABFILE.format(hosts=names, repo=str(repo), extra=extra))


def unreachable_here(host):
    """True if nothing of this host answers on this machine's own network."""
    try:
        with socket.create_connection(("127.0.0.1", host.port), timeout=1) as s:
            s.settimeout(1)
            return host.name not in str(s.recv(64))  # another program's port, not this sshd
    except OSError:
        return True


def deployed(fleet):
    return [h.name for h in fleet.hosts if h.sh("test -L /srv/app/current && echo yes || true").strip() == "yes"]


def behind_a_bastion(lab, project, n, bastion_config=(), bastion_key=None, jump="bastion", extra=""):
    """n targets and a bastion in a network of their own; returns (bastion, targets, ssh_config path)."""
    ns = lab.netns()
    bastion = lab.fleet(1, ["bastion"], netns=ns, extra_config=list(bastion_config))
    targets = lab.fleet(n, [f"app{i}" for i in range(1, n + 1)], netns=ns)
    door = lab.relay(bastion.hosts[0].port, ns)
    config = project / "ssh_config"
    config.write_text(host_entry("bastion", door.port, bastion_key or bastion.key_path) + "".join(
        host_entry(h.name, h.port, targets.key_path, jump=jump) for h in targets.hosts))
    setup_project(project, targets, extra)
    return bastion, targets, config


def test_ten_targets_behind_one_bastion_make_one_bastion_login(lab, project, fab):
    bastion, targets, config = behind_a_bastion(lab, project, 10)
    assert all(unreachable_here(h) for h in targets.hosts)

    proc = fab(["-S", config, "-R", "app", "deploy"], timeout=120)

    assert proc.returncode == 0, explain(proc)
    assert deployed(targets) == [h.name for h in targets.hosts], explain(proc)
    assert bastion.hosts[0].accepted_count() == 1, bastion.hosts[0].log_text()
    assert [h.accepted_count() for h in targets.hosts] == [1] * 10


def test_bastion_with_max_startups_5_serves_20_targets_via_env_gateway(lab, project, fab):
    bastion, targets, config = behind_a_bastion(lab, project, 20, bastion_config=["MaxStartups 5"], jump=None,
                                                extra="env.gateway = 'bastion'")

    proc = fab(["-S", config, "-R", "app", "deploy"], timeout=180)

    assert proc.returncode == 0, explain(proc)
    assert "banner" not in proc.stderr + proc.stdout
    assert len(deployed(targets)) == 20, explain(proc)
    log = bastion.hosts[0].log_text()
    assert log.count("Accepted publickey") == 1, log
    assert "drop connection" not in log and "beginning MaxStartups throttling" not in log, log


def test_a_chain_of_two_bastions(lab, project, fab):
    outer, inner = lab.netns(), lab.netns()
    b1 = lab.fleet(1, ["b1"], netns=outer)
    b2 = lab.fleet(1, ["b2"], netns=inner)
    targets = lab.fleet(3, ["app1", "app2", "app3"], netns=inner)
    door = lab.relay(b1.hosts[0].port, outer)  # this machine -> b1
    inner_door = lab.relay(b2.hosts[0].port, inner, listen_ns=outer)  # b1's network -> b2
    config = project / "ssh_config"
    config.write_text(
        host_entry("b1", door.port, b1.key_path)
        + host_entry("b2", inner_door.port, b2.key_path)  # a port of b1's network, not of this machine's
        + "".join(host_entry(h.name, h.port, targets.key_path, jump="b1,b2") for h in targets.hosts))
    setup_project(project, targets)

    proc = fab(["-S", config, "-R", "app", "deploy"], timeout=120)

    assert proc.returncode == 0, explain(proc)
    assert deployed(targets) == ["app1", "app2", "app3"]
    assert b1.hosts[0].accepted_count() == 1
    assert b2.hosts[0].accepted_count() == 1
    assert [h.accepted_count() for h in targets.hosts] == [1, 1, 1]


def test_a_bastion_that_refuses_the_key_is_one_line_naming_it(lab, project, fab):
    wrong_key = project / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True)
    bastion, targets, config = behind_a_bastion(lab, project, 12, bastion_key=wrong_key)

    proc = fab(["-S", config, "-R", "app", "deploy"], timeout=120)

    assert proc.returncode != 0, explain(proc)
    reasons = [line for line in proc.stderr.splitlines() if "authentication failed" in line]
    assert len(reasons) == 1, explain(proc)
    assert "bastion bastion" in reasons[0] and "app12" in reasons[0], explain(proc)
    assert "Traceback" not in proc.stderr
    assert all(h.accepted_count() == 0 for h in targets.hosts)
    assert bastion.hosts[0].log_text().count("Accepted publickey") == 0
