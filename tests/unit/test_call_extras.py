"""What is built around call(): per-host results, the preflight checks' rules, --strategy's grouping."""

import invoke
import pytest

from fake.cli.strategy import merge_free, strategy_of
from fake.exceptions import ConfigError, HostError, StepFailed
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


# -- warn_only and --strategy free on the engine, without SSH ---------------------------------
def _logging_registry(log, fail_on=(), slow="h1"):
    import threading
    import time

    from fake.registry import Registry
    from fake.state import env

    reg = Registry()
    lock = threading.Lock()

    def step(name):
        def body():
            host = env.host_string
            with lock:
                log.append(("start", name, host))
            if name == "a" and host == slow:
                time.sleep(0.3)
            if (name, host) in fail_on:
                raise RuntimeError(f"{name} broke")
            with lock:
                log.append(("end", name, host))
            return f"{name}@{host}"

        body.__name__ = name
        reg.task(name=name)(body)

    for name in ("pre", "a", "b", "post"):
        step(name)
    reg.before("a", "pre")
    reg.after("a", "post")
    return reg


def _ends(log, name):
    return {host: i for i, (kind, task, host) in enumerate(log) if kind == "end" and task == name}


def test_collect_drops_a_failed_host_from_the_later_calls_and_keeps_the_others():
    from fake.engine.results import collect
    from tests.unit.test_engine import make_run

    log = []
    reg = _logging_registry(log, fail_on={("pre", "h2")})
    with make_run(reg, hosts=["h1", "h2", "h3"]) as run:
        results = collect(run, reg.expand("a"), ["h1", "h2", "h3"])
    assert results.successful() == {"h1": "post@h1", "h3": "post@h3"}
    assert list(results.failures()) == ["h2"] and "pre broke" in str(results.failures()["h2"])
    assert not any(host == "h2" and task in ("a", "post") for _, task, host in log)  # h2 went no further


def test_run_free_lets_fast_hosts_run_ahead_and_a_failure_stops_only_its_host():
    from fake.engine.free import run_free
    from tests.unit.test_engine import make_run

    log = []
    reg = _logging_registry(log)
    calls = reg.expand("b")
    with make_run(reg, hosts=["h1", "h2", "h3"]) as run:
        values = run_free(run, [c for c in reg.expand("a") if c.via is None] + calls, ["h1", "h2", "h3"])
    assert values == {"h1": "b@h1", "h2": "b@h2", "h3": "b@h3"}
    a_end, b_end = _ends(log, "a"), _ends(log, "b")
    assert b_end["h2"] < a_end["h1"] and b_end["h3"] < a_end["h1"]  # no barrier between a and b
    assert all(a_end[h] < b_end[h] for h in ("h1", "h2", "h3"))  # each host in its own order

    log.clear()
    reg = _logging_registry(log, fail_on={("a", "h1")})
    with make_run(reg, hosts=["h1", "h2", "h3"]) as run, pytest.raises(StepFailed) as err:
        run_free(run, [c for c in reg.expand("a") if c.via is None] + reg.expand("b"), ["h1", "h2", "h3"])
    assert list(err.value.failures) == ["h1"] and "a broke" in str(err.value)
    assert set(_ends(log, "b")) == {"h2", "h3"}
