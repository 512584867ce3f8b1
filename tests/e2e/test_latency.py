"""Round trips per command, measured through a delaying proxy (bench/proxy.py) on 127.0.0.1."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import explain

PROXY = Path(__file__).resolve().parents[2] / "bench" / "proxy.py"
DELAY_MS = 50  # each way: a round trip through the proxy costs at least 100 ms


@pytest.fixture
def slow_host(make_fleet, project):
    """One sshd host behind a proxy that delays every chunk by DELAY_MS each way; its ssh_config."""
    fleet = make_fleet(1, names=["far"])
    host = fleet.hosts[0]
    proxy = subprocess.Popen([sys.executable, str(PROXY), "--delay-ms", str(DELAY_MS), str(host.port)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ports = {int(k): v for k, v in json.loads(proxy.stdout.readline()).items()}
        config = fleet.write_ssh_config(project / "ssh_config", ports={host.name: ports[host.port]})
        yield config
    finally:
        proxy.terminate()
        proxy.wait(10)


def test_each_command_costs_one_round_trip_not_two(fab, project, slow_host):
    """The next command's channel is requested while the one before runs.

    A command needs an open channel, and opening one costs a round trip.
    Fake asks for the next command's channel as soon as it hands one out, so
    that round trip overlaps the command before, and each command costs one
    round trip instead of two.

    Checked by order, not by a time limit a busy machine could miss: the
    fabfile notes, through Paramiko's own calls, when each channel was asked
    for and which channel each command ran on. Every command's channel must
    have been asked for before the command before it returned. Behind the
    proxy that command takes at least a 100 ms round trip; if each command
    opened its own channel, it would ask only after the one before returned.
    """
    (project / "fabfile.py").write_text(textwrap.dedent("""
        import json, re, time
        import paramiko
        from fake.api import run, task

        asked, ran, returned = {}, {}, []  # channel id -> when asked for; command -> its channel id
        _open_session = paramiko.Transport.open_session
        _exec_command = paramiko.Channel.exec_command

        def open_session(self, *args, **kwargs):
            started = time.monotonic()
            channel = _open_session(self, *args, **kwargs)
            asked[channel.get_id()] = started
            return channel

        def exec_command(self, command):
            mark = re.search(r"mark-(\\d+)", command)
            if mark:
                ran[int(mark.group(1))] = self.get_id()
            return _exec_command(self, command)

        paramiko.Transport.open_session = open_session
        paramiko.Channel.exec_command = exec_command

        @task
        def eight(c):
            for k in range(9):  # 0 may wait for the channel asked for when connecting
                run(f"true mark-{k}")
                returned.append(time.monotonic())
            print("EVENTS", json.dumps({"asked": asked, "ran": ran, "returned": returned}))
    """))
    proc = fab(["-S", str(slow_host), "-H", "far", "eight"], timeout=60)
    assert proc.returncode == 0, explain(proc)
    events = json.loads(re.search(r"EVENTS (.*)", proc.stdout).group(1))
    asked = {int(k): v for k, v in events["asked"].items()}
    ran = {int(k): v for k, v in events["ran"].items()}
    returned = events["returned"]
    assert sorted(ran) == list(range(9)) and len(returned) == 9, explain(proc)
    assert len(set(ran.values())) == 9, "each command on a channel of its own" + explain(proc)
    late = [f"command {k}'s channel was asked for {asked[ran[k]] - returned[k - 1]:.3f} s"
            f" after command {k - 1} returned"
            for k in range(1, 9) if not asked[ran[k]] < returned[k - 1]]
    assert not late, "\n".join(late) + explain(proc)
