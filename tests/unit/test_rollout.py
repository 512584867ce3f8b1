"""Batches, the health gate's place and the failure budget: pure logic of fake.engine.rollout."""

import pytest

from fake.env import Env
from fake.exceptions import ConfigError, HostBusy, HostError, StepFailed
from fake.engine.rollout import Rollout, plan_batches, split_window
from fake.registry import Call, Task
from fake.settings import as_share

HOSTS = [f"web{i}" for i in range(1, 8)]


@pytest.mark.parametrize("canary,size,want", [
    (0, None, [HOSTS]),
    (1, None, [["web1"], HOSTS[1:]]),
    (1, 2, [["web1"], ["web2", "web3"], ["web4", "web5"], ["web6", "web7"]]),
    (0, 3, [HOSTS[:3], HOSTS[3:6], ["web7"]]),
    (2, 10, [["web1", "web2"], HOSTS[2:]]),
    (9, 2, [HOSTS]),
])
def test_batches_keep_host_order_canary_first(canary, size, want):
    assert plan_batches(HOSTS, canary, size) == want


@pytest.mark.parametrize("value,total,at_least,want", [
    ("25%", 7, 1, 1), ("25%", 8, 1, 2), ("10%", 5, 0, 0), ("10%", 5, 1, 1), ("100%", 6, 0, 6),
    (3, 6, 0, 3), ("3", 6, 0, 3), (None, 6, 1, None), ("", 6, 1, None), ("0", 6, 1, 1),
])
def test_a_share_is_a_count_or_a_percentage_rounded_down(value, total, at_least, want):
    assert as_share("batch_size", value, total, at_least=at_least) == want


@pytest.mark.parametrize("bad", ["x", "150%", "-1", "2.5", "%", True])
def test_a_bad_share_names_the_setting(bad):
    with pytest.raises(ConfigError, match=r"env\.max_fail must be a whole number or a percentage"):
        as_share("max_fail", bad, 6)


def _call(name, gate=False):
    task = Task(lambda: None, name=name)
    if gate:
        task.batch_gate = True
    return Call(task)


def test_the_window_is_publishing_published_and_the_gate_that_follows():
    body = [("updated", [_call("migrate")]), ("publishing", [_call("deploy:symlink")]),
            ("published", [_call("restart")]),
            ("finishing", [_call("deploy:healthcheck", gate=True), _call("finishing"), _call("deploy:finish")]),
            ("finished", [])]
    before, window, after = split_window(body)
    assert [name for _, name, _ in before] == ["updated"]
    assert [(i, stage, j, call.name) for i, stage, j, call in window] == [
        (1, "publishing", 0, "deploy:symlink"), (2, "published", 0, "restart"),
        (3, "finishing", 0, "deploy:healthcheck")]
    assert [(i, name, [(j, c.name) for j, c in calls]) for i, name, calls in after] == [
        (3, "finishing", [(1, "finishing"), (2, "deploy:finish")]), (4, "finished", [])]


def _rollout(**values):
    env = Env()
    env.update(values)
    return Rollout.read(env, HOSTS[:6])


def test_settings_are_off_by_default():
    r = _rollout()
    assert (r.batches, r.rolling, r.active, r.budget) == ([HOSTS[:6]], False, False, 0)


def _failure(*hosts):
    return StepFailed("deploy:healthcheck", {h: HostError(h, "health check failed") for h in hosts}, done=["x"])


def test_the_budget_drops_hosts_until_it_is_spent():
    r = _rollout(batch_size="2", max_fail="1")
    assert r.refuse(_failure("web3"), batch=2) is None
    r.drop(_failure("web3").failures)
    why = r.refuse(_failure("web5"), batch=3)
    assert why.startswith("in batch 3/3: 2 hosts failed, more than max_fail=1") and "web3" in why and "web5" in why


def test_any_failure_in_the_canary_batch_stops_everything():
    r = _rollout(canary=1, max_fail="50%")
    assert r.budget == 3
    assert "the canary batch (web1) failed" in r.refuse(_failure("web1"), batch=1)
    assert r.refuse(_failure("web2"), batch=2) is None


def test_a_host_another_run_holds_is_dropped_unless_the_run_waits_for_locks():
    r = _rollout(max_fail=3)
    busy = StepFailed("deploy:check", {"web2": HostBusy("web2", "locked by someone")})
    assert r.droppable(busy) and r.refuse(busy) is None
    assert not r.droppable(busy, waiting=True)


def test_unreachable_hosts_count_against_the_budget():
    env = Env()
    env.update(max_fail=1)
    r = Rollout.read(env, HOSTS[:4], {"web5": HostError("web5", "connection refused"), "web6": HostError("web6", "x")})
    assert r.budget == 1 and r.over_budget().startswith("2 hosts failed, more than max_fail=1")
