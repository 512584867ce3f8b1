"""fake.engine without SSH: scheduler width and order, interrupts, the flow barrier,
clean-up selection, and each host's env kept to itself."""

import _thread
import threading
import time

import invoke
import pytest

from fake.engine import Run
from fake.engine.flow import tasks_after
from fake.engine.flowstate import FlowState, current_flow
from fake.engine.scheduler import Scheduler
from fake.engine.scope import Scopes, merge_roles, split_host
from fake.exceptions import Interrupted, StepFailed
from fake.registry import Registry
from fake.state import env

HOSTS = ["h1", "h2", "h3", "h4", "h5"]


class _Pool:
    """Connections without SSH: each host gets a token object."""

    def __init__(self):
        self.opened = []
        self.conns = {}

    def connect(self, host, scope=None):
        conn = self.conns.setdefault(host, invoke.Context())
        if scope is not None and scope.default_connection is None:
            scope.connection = conn
        self.opened.append(host)
        return conn

    def reached(self, hosts):
        return [h for h in hosts if h in self.opened]

    def hosts(self):
        return list(dict.fromkeys(self.opened))

    def close(self):
        pass


def make_run(registry, hosts=HOSTS, **kwargs):
    run = Run(env, registry, hosts=hosts, **kwargs)
    run.pool = _Pool()
    return run


# -- scheduler ------------------------------------------------------------------------
def test_scheduler_never_runs_more_than_its_width_and_starts_in_host_order():
    started, running, peak = [], [0], [0]
    lock = threading.Lock()

    def work(host):
        with lock:
            started.append(host)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return host.upper()

    results, failures, skipped = Scheduler(width=2).map(HOSTS, work)
    assert peak[0] == 2
    assert started[:2] == ["h1", "h2"] and sorted(started) == HOSTS
    assert results == {h: h.upper() for h in HOSTS} and not failures and not skipped


def test_scheduler_keeps_every_failure_and_finishes_the_other_hosts():
    def work(host):
        if host in ("h2", "h4"):
            raise RuntimeError(f"{host} broke")
        return "ok"

    results, failures, _ = Scheduler(width=1).map(HOSTS, work)
    assert set(results) == {"h1", "h3", "h5"}
    assert {h: str(e) for h, e in failures.items()} == {"h2": "h2 broke", "h4": "h4 broke"}


def test_first_interrupt_lets_running_hosts_finish_and_starts_no_more():
    said = []
    sched = Scheduler(width=2, say=said.append)

    def work(host):
        if host == "h1":
            time.sleep(0.05)
            _thread.interrupt_main()
        time.sleep(0.3)
        return "done"

    results, failures, skipped = sched.map(HOSTS, work)
    assert set(results) == {"h1", "h2"} and not failures
    assert skipped == ["h3", "h4", "h5"]
    assert sched.interrupted == "SIGINT" and not sched.aborted
    assert "press Ctrl-C again" in said[0]
    with pytest.raises(Interrupted):
        sched.check()


def test_second_interrupt_aborts_at_once_and_names_the_hosts_left_running():
    sched = Scheduler(width=5)
    release = threading.Event()
    pending = []

    def work(host):
        if host == "h1":
            time.sleep(0.05)
            _thread.interrupt_main()
            time.sleep(0.2)
            _thread.interrupt_main()
        release.wait(5)

    with pytest.raises(Interrupted):
        sched.map(HOSTS, work, on_abort=pending.extend)
    release.set()
    assert sched.aborted and sorted(pending) == HOSTS


def test_workers_carry_only_what_prepare_sets():
    seen = {}
    flow = FlowState()

    def work(host):
        seen[host] = current_flow()

    Scheduler().map(["a"], work)
    Scheduler().map(["b"], work, prepare=flow.activate)
    assert seen == {"a": None, "b": flow}


# -- flows ------------------------------------------------------------------------------
def _flow_registry(log, fail_on=None):
    reg = Registry()
    lock = threading.Lock()

    def stage(name):
        def body():
            with lock:
                log.append(("start", name, env.host_string))
            time.sleep(0.01 if env.host_string != "h1" else 0.05)  # h1 is slow
            if fail_on == (name, env.host_string):
                raise RuntimeError("boom")
            with lock:
                log.append(("end", name, env.host_string))

        body.__name__ = name
        reg.task(name=name)(body)

    for name in ("one", "two", "three", "undo", "last"):
        stage(name)
    reg.flow("one", "two", "three", on_failure="undo", final="last", name="go")(lambda: None)
    return reg


def test_each_stage_ends_on_every_host_before_the_next_starts_anywhere():
    log = []
    reg = _flow_registry(log)
    with make_run(reg) as run:
        run.run_calls(reg.expand("go"), HOSTS)
    order = ["one", "two", "three", "last"]
    for earlier, later in zip(order, order[1:]):
        last_end = max(i for i, e in enumerate(log) if e[:2] == ("end", earlier))
        first_start = min(i for i, e in enumerate(log) if e[:2] == ("start", later))
        assert last_end < first_start, (earlier, later, log)
    assert not any(e[1] == "undo" for e in log)


def test_a_failed_stage_runs_the_clean_up_on_reached_hosts_and_nothing_later():
    log = []
    reg = _flow_registry(log, fail_on=("two", "h3"))
    with make_run(reg, hosts=["h1", "h2", "h3"]) as run:
        run.pool.opened = ["h1", "h2", "h3"]
        with pytest.raises(StepFailed) as err:
            run.run_calls(reg.expand("go"), ["h1", "h2", "h3"])
    assert "h3" in str(err.value)
    assert not any(e[1] == "three" for e in log)
    undo = sorted(e[2] for e in log if e[:2] == ("end", "undo"))
    assert undo == ["h1", "h2", "h3"]
    assert max(i for i, e in enumerate(log) if e[1] == "undo") < min(i for i, e in enumerate(log) if e[1] == "last")


def test_clean_up_skips_hosts_never_reached():
    log = []
    reg = _flow_registry(log, fail_on=("one", "h1"))
    with make_run(reg, hosts=["h1", "h2"]) as run:
        run.connect_all = lambda hosts: None
        original = run.pool.connect
        run.pool.connect = lambda host, scope=None: original(host, scope) if host == "h1" else (_ for _ in ()).throw(
            RuntimeError("unreachable"))
        with pytest.raises(StepFailed):
            run.run_calls(reg.expand("go"), ["h1", "h2"])
    assert sorted({e[2] for e in log if e[1] in ("undo", "last")}) == ["h1"]


def test_tasks_after_lists_later_stages_then_clean_up():
    reg = _flow_registry([])
    fcall = reg.expand("go")[0]
    flow = FlowState(fcall, HOSTS)
    assert tasks_after(None) is None
    flow.position = (1, 0)  # in stage "two"
    assert [t.name for t in tasks_after(flow)] == ["three", "undo", "last"]
    flow.cleanup_rest = [fcall.final[0]]
    assert [t.name for t in tasks_after(flow)] == ["last"]


def test_flows_started_together_keep_their_own_state():
    reg = Registry()
    seen = {}

    @reg.task(name="mark")
    def mark():
        from fake.engine import current_run

        run = current_run()
        seen[env.host_string] = run.once("token", lambda: env.host_string)

    reg.flow("mark", name="single")(lambda: None)

    @reg.task(name="fan")
    def fan():
        from fake.engine import execute

        execute("single", hosts=[env.host_string])

    with make_run(reg) as run:
        run.run_calls(reg.expand("fan"), HOSTS)
    assert seen == {h: h for h in HOSTS}


# -- host scopes -------------------------------------------------------------------------
def test_env_written_on_one_host_is_seen_by_that_host_only():
    reg = Registry()
    seen = {}

    @reg.task(name="write")
    def write():
        env.color = f"red-{env.host_string}"
        time.sleep(0.01)
        seen[env.host_string] = env.color

    @reg.task(name="read")
    def read():
        seen[env.host_string + "-later"] = env.color

    with make_run(reg) as run:
        run.run_calls(reg.expand("write") + reg.expand("read"), HOSTS)
    for h in HOSTS:
        assert seen[h] == seen[h + "-later"] == f"red-{h}"
    assert "color" not in env


def test_values_a_flow_shows_a_host_are_gone_when_the_flow_ends():
    reg = Registry()
    seen = {}

    @reg.task(name="show")
    def show():
        from fake.engine import current_flow

        current_flow().shown(env.host_string)["release_path"] = "/srv/app/releases/1"
        seen["inside"] = env.release_path

    @reg.task(name="after")
    def after():
        seen["after"] = env.get("release_path")
        seen["keys"] = env.keys()

    reg.flow("show", name="f")(lambda: None)
    with make_run(reg, hosts=["h1"]) as run:
        run.run_calls(reg.expand("f") + reg.expand("after"), ["h1"])
    assert seen["inside"] == "/srv/app/releases/1"
    assert seen["after"] is None and "release_path" not in seen["keys"]


def test_scopes_give_role_values_to_their_hosts_only():
    env.roledefs = {"web": {"hosts": ["h1"], "branch": "w"}, "db": {"hosts": ["h2"], "branch": "d"}}
    scopes = Scopes(env, ["web", "db"])
    with scopes.enter("h1"):
        assert env.branch == "w" and env.host == "h1"
    with scopes.enter("h2"):
        assert env.branch == "d"
    assert "branch" not in env


def test_host_strings_and_role_order():
    assert split_host("deploy@web1:2222") == ("deploy", "web1", "2222")
    assert split_host("web1") == (None, "web1", None)
    assert merge_roles(["a", "b"], ["c", "a"]) == ["b", "c", "a"]


# -- waiting for other runs' locks ------------------------------------------------------
def _busy_registry(log, busy_attempts):
    reg = Registry()
    attempts = {"n": 0}

    @reg.task(name="take")
    def take():
        from fake.exceptions import HostBusy

        log.append(("take", env.host_string))
        if env.host_string == "h2":
            attempts["n"] += 1
        if env.host_string == "h2" and attempts["n"] <= busy_attempts:
            raise HostBusy("h2", "locked by someone@elsewhere")

    for name in ("work", "undo", "release", "notify"):
        reg.task(name=name)(lambda name=name: log.append((name, env.host_string)))
    reg.tasks["release"].on_retry = True
    reg.after("release", "notify")  # a fabfile's hook on the last stage: once, at the very end
    reg.flow("take", "work", on_failure="undo", final="release", name="go")(lambda: None)
    return reg


def test_a_flow_blocked_by_another_runs_lock_tries_again_while_lock_wait_lasts():
    log = []
    reg = _busy_registry(log, busy_attempts=2)
    with make_run(reg, hosts=["h1", "h2"], lock_wait=30) as run:
        run.pool.opened = ["h1", "h2"]
        run.run_calls(reg.expand("go"), ["h1", "h2"])
        assert run.report.outcome == {"h1": "ok", "h2": "ok"}
    assert sum(1 for e in log if e == ("take", "h1")) == 3
    assert sum(1 for e in log if e == ("release", "h1")) == 3  # the locks it got are given back each time
    assert not any(e[0] == "undo" for e in log)  # no failure clean-up (nor its hooks) for a wait
    assert sum(1 for e in log if e[0] == "work") == 2
    assert sum(1 for e in log if e[0] == "notify") == 2  # h1 and h2, after the try that went through


def test_without_lock_wait_a_busy_host_fails_the_flow_and_cleans_up():
    log = []
    reg = _busy_registry(log, busy_attempts=1)
    with make_run(reg, hosts=["h1", "h2"]) as run:
        run.pool.opened = ["h1", "h2"]
        with pytest.raises(StepFailed) as err:
            run.run_calls(reg.expand("go"), ["h1", "h2"])
    assert "locked by someone@elsewhere" in str(err.value)
    assert ("undo", "h1") in log and not any(e[0] == "work" for e in log)


def test_a_first_interrupt_during_a_clean_up_lets_it_finish_on_every_host():
    said = []
    sched = Scheduler(width=2, say=said.append)

    def work(host):
        if host == "h1":
            time.sleep(0.05)
            _thread.interrupt_main()
        time.sleep(0.2)
        return "cleaned"

    results, failures, skipped = sched.map(HOSTS, work, interruptible=False)
    assert results == {h: "cleaned" for h in HOSTS} and not skipped and not sched.aborted
    assert "during the clean-up" in said[0]


def test_map_gives_failures_and_results_in_host_order_whatever_order_they_finish():
    import time as _time

    from fake.engine.scheduler import Scheduler

    hosts = ["web1", "web2", "web3", "web4"]
    delay = {"web1": 0.3, "web2": 0.0, "web3": 0.2, "web4": 0.1}

    def fn(host):
        _time.sleep(delay[host])
        if host in ("web1", "web3", "web4"):
            raise RuntimeError("down")
        return host

    results, failures, skipped = Scheduler(width=4).map(hosts, fn)
    assert list(failures) == ["web1", "web3", "web4"] and list(results) == ["web2"] and skipped == []
