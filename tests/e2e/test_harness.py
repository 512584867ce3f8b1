"""Tests of the e2e harness itself, so a broken harness is not mistaken for
a broken Fake.  They use the system ssh client, not Fabric, where possible,
to keep the two independent."""

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e import sshd
from tests.e2e.conftest import explain, plain_fab


def ssh(fleet, host, command):
    return subprocess.run(
        ["ssh", "-F", str(fleet.ssh_config_path), host, command],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )


def test_each_host_logs_in_as_test_user(fleet3):
    assert [h.name for h in fleet3.hosts] == ["web1", "web2", "db1"]
    assert len({h.port for h in fleet3.hosts}) == 3
    for host in fleet3.hosts:
        proc = ssh(fleet3, host.name, "id -un")
        assert proc.returncode == 0, explain(proc)
        assert proc.stdout == "fake-test\n"
        # .pid is the sshd itself, not unshare or sh.
        assert os.readlink(f"/proc/{host.pid}/exe") == sshd.SSHD


def test_srv_is_private_per_host(fleet3):
    name = f"marker-{uuid.uuid4().hex}"
    assert not Path("/srv", name).exists()
    proc = ssh(fleet3, "web1", f"echo hi > /srv/{name}")
    assert proc.returncode == 0, explain(proc)

    assert fleet3["web1"].sh(f"cat /srv/{name}") == "hi\n"
    assert ssh(fleet3, "web2", f"test -e /srv/{name}").returncode == 1
    assert fleet3["db1"].sh(f"test -e /srv/{name}", check=False) == ""
    with pytest.raises(RuntimeError):
        fleet3["web2"].sh(f"test -e /srv/{name}")
    assert not Path("/srv", name).exists()
    # Each /srv is writable by the login user, as a deploy target must be.
    assert fleet3["db1"].sh("stat -c %U /srv") == "fake-test\n"


def test_accepted_count_counts_connections(fleet3):
    web1, web2 = fleet3["web1"], fleet3["web2"]
    assert (web1.accepted_count(), web2.accepted_count()) == (0, 0)
    for expected in (1, 2):
        proc = ssh(fleet3, "web1", "true")
        assert proc.returncode == 0, explain(proc)
        assert web1.accepted_count() == expected
    web1.sh("true")  # nsenter is not a login
    assert (web1.accepted_count(), web2.accepted_count()) == (2, 0)


def test_stopped_host_refuses_and_others_keep_working(fleet3):
    web2 = fleet3["web2"]
    pid = web2.pid
    web2.stop()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", web2.port), timeout=2).close()
    assert ssh(fleet3, "web2", "true").returncode == 255
    for name in ("web1", "db1"):
        proc = ssh(fleet3, name, "id -un")
        assert proc.returncode == 0, explain(proc)


def test_fab_reaches_hosts_through_ssh_config(fleet3, fab, project):
    (project / "fabfile.py").write_text(
        "from fabric import task\n\n"
        "@task\n"
        "def who(c):\n"
        "    print(c.original_host, c.host, c.port,"
        " c.run('id -un', hide=True).stdout.strip())\n"
    )
    # Plain Fabric, not Fake's ``fab``: this checks the harness, not Fake.
    proc = fab(["-H", "web1,db1", "who"], fleet=fleet3, program=plain_fab)
    assert proc.returncode == 0, explain(proc)
    # Fabric replaces .host with the config's HostName; the alias survives
    # only as .original_host.
    assert proc.stdout.splitlines() == [
        f"{h.name} 127.0.0.1 {h.port} fake-test"
        for h in (fleet3["web1"], fleet3["db1"])
    ]
    assert [h.accepted_count() for h in fleet3.hosts] == [1, 0, 1]


def test_repo_helpers_make_clonable_repo(fleet3):
    repo = fleet3.workdir / "repo"
    first = sshd.make_repo(repo)
    second = sshd.commit(repo, {"app.py": "v2\n"}, "Second")
    sshd.branch(repo, "feature", from_ref=first)
    feature = sshd.commit(repo, {"new.txt": "x"}, "On feature",
                          branch="feature")
    assert len({first, second, feature}) == 3

    proc = ssh(fleet3, "web1",
               f"git clone -q {repo} /srv/app && cd /srv/app"
               " && git rev-parse HEAD origin/feature && cat app.py"
               " && test -f static/.keep && test ! -e new.txt")
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == [second, feature, "v2"]


def test_a_port_taken_before_sshd_binds_it_is_replaced(monkeypatch):
    """The harness picks a port, then sshd binds it: whoever takes it in between must not break the fleet."""
    real, squatters = sshd._free_ports, []

    def then_taken(n):
        ports = real(n)
        if not squatters:  # the first host's port goes to someone else at once
            s = socket.socket()
            s.bind(("127.0.0.1", ports[0]))
            s.listen()
            squatters.append(s)
        return ports

    monkeypatch.setattr(sshd, "_free_ports", then_taken)
    try:
        with sshd.Fleet(2) as fleet:
            blocked = squatters[0].getsockname()[1]
            assert blocked not in [h.port for h in fleet.hosts]
            out = subprocess.run(["ssh", "-F", str(fleet.ssh_config_path), "web1", "echo via-ssh"],
                                 capture_output=True, text=True, timeout=30)
            assert out.stdout.strip() == "via-ssh", out.stderr
    finally:
        for s in squatters:
            s.close()


def test_a_crashed_host_restarts_with_its_files(make_fleet):
    fleet = make_fleet(2, names=["web1", "web2"])
    web1 = fleet["web1"]
    assert ssh(fleet, "web1", "echo kept > /srv/kept").returncode == 0
    old_pid = web1.pid
    web1.crash()
    assert not web1.running and web1._namespace_pids() == []
    assert ssh(fleet, "web1", "true").returncode != 0, "nothing listens while it is down"
    web1.restart()
    assert web1.running and web1.pid != old_pid
    proc = ssh(fleet, "web1", "cat /srv/kept")
    assert proc.returncode == 0 and proc.stdout == "kept\n", explain(proc)
    assert web1.sh("cat /srv/kept") == "kept\n"
    assert ssh(fleet, "web2", "test -e /srv/kept").returncode == 1, "still its own /srv"


def test_fault_proxy_delays_and_resets_one_host(fleet3):
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from faultproxy import FaultProxy

    proxy = FaultProxy({h.name: h.port for h in fleet3.hosts})
    try:
        config = fleet3.write_ssh_config(fleet3.workdir / "ssh_config_proxied", ports=proxy.ports)

        def via(host, command):
            return subprocess.run(["ssh", "-F", str(config), host, command], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=30)

        assert via("web1", "echo through").stdout == "through\n"
        proxy.set_delay("web2", 0.1)
        started = time.monotonic()
        assert via("web2", "true").returncode == 0
        assert time.monotonic() - started > 0.8, "a login takes several round trips of 0.2 s"
        proxy.cut("web1", "down", 0)  # the first byte back from web1 resets the connection
        proc = via("web1", "echo never")
        assert proc.returncode == 255 and "never" not in proc.stdout, explain(proc)
        fired = proxy.reset()
        assert [(e["name"], e["direction"]) for e in fired] == [("web1", "down")]
        assert via("web1", "echo again").stdout == "again\n", "reset disarms and clears delays"
        assert proxy.traffic("db1") == {"up": 0, "down": 0}
    finally:
        proxy.close()
