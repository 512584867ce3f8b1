"""Round trips per command, measured through a delaying proxy (bench/proxy.py) on 127.0.0.1."""

import json
import re
import subprocess
import sys
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
    """The next command's channel is opened while the one before runs.

    Eight commands over a 100 ms round trip: about 0.8 s with a channel
    ready for each, at least 1.6 s if each must open its own first.
    """
    (project / "fabfile.py").write_text(
        "import time\n"
        "from fake.api import run, task\n\n"
        "@task\n"
        "def eight(c):\n"
        "    run('true')  # the first command may wait for the connection's spare channel\n"
        "    start = time.monotonic()\n"
        "    for _ in range(8):\n"
        "        run('true')\n"
        "    print(f'eight commands took {time.monotonic() - start:.3f} s')\n"
    )
    proc = fab(["-S", str(slow_host), "-H", "far", "eight"], timeout=60)
    assert proc.returncode == 0, explain(proc)
    took = float(re.search(r"eight commands took ([\d.]+) s", proc.stdout).group(1))
    assert 0.8 <= took < 1.25, explain(proc)
