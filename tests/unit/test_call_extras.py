"""What is built around call(): per-host results, the preflight checks' rules, --strategy's grouping."""

import invoke
import pytest

from fake.cli.strategy import merge_free, strategy_of
from fake.exceptions import ConfigError, HostError
from fake.engine.results import HostResults
from fake.registry import Call, FlowCall, Task
from fake.tasks.checks import judge, parse_ports, parse_size, parse_version
from fake.tasks.hostfacts import facts, free_bytes, port_state


def test_host_results_split_successes_and_failures():
    error = HostError("web2", "call(check) raised ValueError: bad")
    results = HostResults({"web1": 1, "web3": 3}, {"web2": error})
    assert results == {"web1": 1, "web3": 3, "web2": error}
    assert results.successful() == {"web1": 1, "web3": 3}
    assert results.failures() == {"web2": error}
    assert HostResults({"web1": None}).failures() == {}


@pytest.mark.parametrize("text, size", [(0, 0), ("500M", 500 << 20), ("2G", 2 << 30), ("1.5k", 1536),
                                        ("10MiB", 10 << 20), ("4096", 4096), (" 1 T ", 1 << 40)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1G", "5X", True])
def test_bad_sizes_name_the_setting(bad):
    with pytest.raises(ConfigError, match="env.check_disk_free wants a size"):
        parse_size(bad)


def test_versions_and_ports():
    assert parse_version("3.8") == (3, 8) and parse_version((3, 10, 1)) == (3, 10, 1)
    with pytest.raises(ConfigError, match="env.check_python"):
        parse_version("three")
    assert parse_ports("80, 443", "check_ports_free") == [80, 443] and parse_ports([5432], "x") == [5432]
    with pytest.raises(ConfigError, match="env.check_ports_free wants TCP port numbers, got '70000'"):
        parse_ports("70000", "check_ports_free")


def test_judge_names_each_failed_check():
    want = {"check_python": (3, 10), "check_disk_free": 1 << 30, "check_ports_free": [8000],
            "check_ports_listening": [5432]}
    found = {"python": (3, 9, 18), "free_bytes": 1 << 20, "ports": {8000: "listening", 5432: "free"}}
    assert judge(want, found, "/srv/app") == [
        "check_python: Python 3.9.18 is older than 3.10",
        "check_disk_free: 1.0M free under /srv/app, 1.0G needed",
        "check_ports_free: something listens on port 8000",
        "check_ports_listening: nothing listens on port 5432",
    ]
    good = {"python": (3, 11, 0), "free_bytes": 2 << 30, "ports": {8000: "free", 5432: "listening"}}
    assert judge(want, good, "/srv/app") == []


def test_host_facts_read_this_machine(tmp_path):
    import socket
    import sys

    assert free_bytes(tmp_path / "not" / "yet") == free_bytes(tmp_path) > 0
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_state(port) == "listening"
    assert port_state(port) == "free"
    assert facts(str(tmp_path), [port])["python"] == tuple(sys.version_info[:3])


def test_strategy_names():
    assert strategy_of(None) == "linear" and strategy_of("FREE") == "free"
    with pytest.raises(ConfigError, match="--strategy wants one of linear, free, got 'fast'"):
        strategy_of("fast")


class _Step:
    """A stand-in for the executor's HostsCall: its task carries the Fake call and its hosts."""

    def __init__(self, call, hosts):
        self.task = type("OnHosts", (), {"call": call, "hosts": hosts})()


def test_free_merges_runs_of_task_steps_and_leaves_flows_and_pre_tasks_alone():
    def body():
        pass

    a, b, c = (Call(Task(body, name=n)) for n in "abc")
    flow = FlowCall(Task(body, name="deploy"), {}, None, None, None)
    pre = invoke.Call(invoke.Task(lambda ctx: None, name="pre"))
    hosts = ["web1", "web2"]
    steps = [pre, _Step(a, hosts), _Step(b, hosts), _Step(flow, hosts), _Step(c, hosts)]
    merged = merge_free(executor=None, steps=steps)
    assert merged[0] is pre and merged[2] is steps[3] and merged[3] is steps[4]
    assert [call.name for call in merged[1].task.calls] == ["a", "b"] and merged[1].task.hosts == hosts
