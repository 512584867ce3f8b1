"""fake.env: layered lookup, per-host writes, CallableEnv, settings(), MissingSetting."""

import os
import threading
from contextlib import nullcontext

import pytest

from fake.env import CallableEnv, Env, HostScope, current_scope, host_scope, settings
from fake.exceptions import ConfigError, MissingSetting

# The six layers, highest first, and how a test puts a value into each.
LAYERS = ["host", "top", "override", "role", "global", "default"]


def fill(env, scope, layers, key="x"):
    """Put ``key = <layer name>`` into each named layer."""
    if "default" in layers:
        env.setdefaults(**{key: "default"})
    if "global" in layers:
        setattr(env, key, "global")  # outside any host scope: the fabfile layer
    if "role" in layers:
        scope.role_values[key] = "role"
    if "override" in layers:
        env.set_overrides({key: "override"})
    if "host" in layers:
        with host_scope(scope):
            setattr(env, key, "host")


@pytest.mark.parametrize(
    "present, expected",
    [
        # every layer set: the highest wins
        (LAYERS, "host"),
        # remove the winner one at a time: the next one down wins
        (LAYERS[1:], "top"),
        (LAYERS[2:], "override"),
        (LAYERS[3:], "role"),
        (LAYERS[4:], "global"),
        (LAYERS[5:], "default"),
        # pairwise checks of neighbours that are easy to get backwards
        (["override", "role"], "override"),
        (["role", "global"], "role"),
        (["global", "default"], "global"),
        (["top", "override"], "top"),
        (["host", "top"], "host"),
        (["override", "global"], "override"),
        (["role", "default"], "role"),
    ],
)
def test_layered_lookup_order(present, expected):
    env = Env()
    scope = HostScope("web1")
    fill(env, scope, present)
    # settings() outside any host is the "top" layer
    block = settings(env, x="top") if "top" in present else nullcontext()
    with block, host_scope(scope):
        assert env.x == expected
        assert env["x"] == expected
        assert env.get("x") == expected
        assert dict(env.items())["x"] == expected


def test_without_host_scope_role_and_host_layers_are_invisible():
    env = Env()
    scope = HostScope("web1", role_values={"x": "role"})
    env.setdefaults(x="default")
    with host_scope(scope):
        env.y = "host"
    assert env.x == "default"
    assert "y" not in env
    env.x = "global"
    assert env.x == "global"
    with host_scope(scope):
        assert env.x == "role"
        assert env.y == "host"


def test_setdefaults_never_beats_a_value_set_earlier():
    env = Env()
    env.branch = "main"
    env.setdefaults(branch=None, keep_releases=5)
    assert env.branch == "main"
    assert env.keep_releases == 5


def test_set_overrides_beat_values_written_later_by_the_fabfile():
    env = Env()
    env.set_overrides({"branch": "hotfix"})
    env.branch = "main"  # a fabfile write after --set still loses
    assert env.branch == "hotfix"


def test_keys_items_contains_see_all_layers_once():
    env = Env()
    scope = HostScope("web1", role_values={"r": 1, "g": "role"})
    env.setdefaults(d=1, g="default")
    env.g = "global"
    env.set_overrides({"o": 1})
    with host_scope(scope):
        env.h = 1
        keys = env.keys()
        assert sorted(keys) == ["d", "g", "h", "o", "r"]
        assert len(keys) == len(set(keys))
        assert dict(env.items())["g"] == "role"
        assert "r" in env and "h" in env and "nope" not in env


# -- writes land in the active host's scope only ---------------------------------
@pytest.mark.parametrize(
    "write",
    [
        lambda env: setattr(env, "x", "w"),
        lambda env: env.__setitem__("x", "w"),
        lambda env: env.update(x="w"),
        lambda env: env.update({"x": "w"}),
    ],
    ids=["attr", "item", "update-kwargs", "update-dict"],
)
def test_write_in_host_scope_lands_in_that_scope_only(write):
    env = Env()
    env.x = "global"
    a, b = HostScope("a"), HostScope("b")
    with host_scope(a):
        write(env)
        assert env.x == "w"
    assert a.values == {"x": "w"}
    assert b.values == {}
    assert env._global == {"x": "global"}
    assert env.x == "global"
    with host_scope(b):
        assert env.x == "global"


def test_delete_in_host_scope_only_removes_the_host_value():
    env = Env()
    env.x = "global"
    a = HostScope("a")
    with host_scope(a):
        env.x = "mine"
        del env.x
        assert env.x == "global"
        del env["x"]  # nothing left in this layer: no error, global untouched
    assert env.x == "global"


def test_host_scope_nests_and_restores():
    env = Env()
    a, b = HostScope("a"), HostScope("b")
    assert current_scope() is None
    with host_scope(a):
        env.x = "a"
        with host_scope(b):
            assert current_scope() is b
            env.x = "b"
        assert current_scope() is a
        assert env.x == "a"
    assert current_scope() is None
    assert (a.values, b.values) == ({"x": "a"}, {"x": "b"})


def test_two_threads_write_concurrently_without_seeing_each_other():
    env = Env()
    env.shared = "global"
    scopes = {name: HostScope(name) for name in ("web1", "web2")}
    barrier = threading.Barrier(2, timeout=5)
    seen, errors = {}, []

    def work(name):
        try:
            with host_scope(scopes[name]):
                env.who = name
                env.counter = 0
                barrier.wait()  # both have written before either reads
                for _ in range(200):
                    env.counter = env.counter + 1
                barrier.wait()
                seen[name] = (env.who, env.counter, env.shared, current_scope().host)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in scopes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not errors
    assert seen == {"web1": ("web1", 200, "global", "web1"), "web2": ("web2", 200, "global", "web2")}
    assert scopes["web1"].values == {"who": "web1", "counter": 200}
    assert scopes["web2"].values == {"who": "web2", "counter": 200}
    assert "who" not in env and "counter" not in env
    assert current_scope() is None


def test_a_new_thread_does_not_inherit_the_callers_scope():
    env = Env()
    a = HostScope("a", values={"x": "a"})
    out = {}
    with host_scope(a):
        t = threading.Thread(target=lambda: out.update(scope=current_scope(), x=env.get("x")))
        t.start()
        t.join(5)
    assert out == {"scope": None, "x": None}


# -- CallableEnv ----------------------------------------------------------------
def test_callable_env_calls_callables_on_every_kind_of_read():
    env = Env()
    cenv = CallableEnv(env)
    calls = []

    def base():
        calls.append(1)
        return "/srv"

    cenv.base = base
    assert cenv.base == "/srv"
    assert cenv["base"] == "/srv"
    assert cenv.get("base") == "/srv"
    assert len(calls) == 3  # evaluated at each read, not cached
    assert cenv.raw("base") is base
    assert env.base is base  # the wrapped env stores the callable itself


def test_callable_env_plain_values_and_missing_keys():
    env = Env()
    cenv = CallableEnv(env)
    cenv.n = 3
    assert cenv.n == 3 and cenv["n"] == 3
    assert cenv.get("nope") is None
    assert cenv.get("nope", "dflt") == "dflt"
    assert cenv.raw("nope", "dflt") == "dflt"
    assert getattr(cenv, "nope", 5) == 5
    with pytest.raises(MissingSetting):
        cenv.nope
    with pytest.raises(MissingSetting):
        cenv["nope"]
    assert "n" in cenv and "nope" not in cenv


def test_callable_env_writes_land_in_the_wrapped_env():
    env = Env()
    cenv = CallableEnv(env)
    cenv.a = 1
    cenv["b"] = 2
    assert env._global == {"a": 1, "b": 2}
    del cenv.a
    del cenv["b"]
    assert env._global == {}
    scope = HostScope("web1")
    with host_scope(scope):
        cenv.c = 3
    assert scope.values == {"c": 3}
    assert "c" not in env


def test_callable_env_of_a_callable_env_wraps_the_same_env():
    env = Env()
    twice = CallableEnv(CallableEnv(env))
    twice.x = lambda: 7
    assert twice.x == 7
    assert twice._env is env
    assert "x" in env._global


def test_role_values_beat_fabfile_values_through_callable_env():
    env = Env()
    cenv = CallableEnv(env)
    cenv.branch = "fabfile"
    cenv.deploy_to = lambda: "/srv/" + cenv.branch
    scope = HostScope("web1", role_values={"branch": "staging"})
    with host_scope(scope):
        assert cenv.branch == "staging"
        assert cenv.deploy_to == "/srv/staging"  # the callable reads the role value too
    assert cenv.branch == "fabfile"
    assert cenv.deploy_to == "/srv/fabfile"


def test_seed_example_app_path():
    env = CallableEnv(Env())
    env.get_base_path = lambda: "/srv"
    env.app_path = lambda: os.path.join(env.get_base_path, "app")
    assert env.app_path == "/srv/app"
    env.get_base_path = lambda: "/opt"  # computed at read time
    assert env.app_path == "/opt/app"


# -- settings() -----------------------------------------------------------------
def test_settings_outside_host_scope_restores_previous_and_absent_values():
    env = Env()
    env.a = "old"
    scope = HostScope("web1")
    with settings(env, a="new", b="tmp"):
        assert (env.a, env.b) == ("new", "tmp")
        with host_scope(scope):
            assert (env.a, env.b) == ("new", "tmp")  # seen by every host
    assert env.a == "old"
    assert "b" not in env
    assert env._top == {}
    assert env._global == {"a": "old"}


def test_settings_outside_scope_beat_set_overrides_but_not_host_values():
    env = Env()
    env.set_overrides({"a": "override"})
    scope = HostScope("web1", values={"a": "host"})
    with settings(env, a="block"):
        assert env.a == "block"
        with host_scope(scope):
            assert env.a == "host"
    assert env.a == "override"


def test_settings_inside_host_scope_is_the_hosts_and_restores():
    env = Env()
    env.a = "global"
    a, b = HostScope("a", values={"a": "a-own"}), HostScope("b")
    with host_scope(a):
        with settings(env, a="block", c="tmp"):
            assert (env.a, env.c) == ("block", "tmp")
            with host_scope(b):
                assert env.a == "global"
                assert "c" not in env
        assert env.a == "a-own"
        assert "c" not in env
    assert a.values == {"a": "a-own"}
    assert env._top == {} and env._global == {"a": "global"}


def test_settings_nested_and_restored_after_an_exception():
    env = Env()
    env.a = 1
    with pytest.raises(RuntimeError):
        with settings(env, a=2):
            with settings(env, a=3):
                assert env.a == 3
            assert env.a == 2
            raise RuntimeError("boom")
    assert env.a == 1
    assert env._top == {}


def test_settings_accepts_a_callable_env():
    env = Env()
    cenv = CallableEnv(env)
    with settings(cenv, x=lambda: "computed"):
        assert cenv.x == "computed"
    assert "x" not in env


# -- MissingSetting -------------------------------------------------------------
def test_missing_setting_is_a_config_error_and_an_attribute_error():
    env = Env()
    with pytest.raises(MissingSetting) as info:
        env.deploy_path
    assert isinstance(info.value, AttributeError)
    assert isinstance(info.value, ConfigError)
    assert info.value.key == "deploy_path"
    assert info.value.host is None
    assert str(info.value) == "setting env.deploy_path is required but not set"
    assert getattr(env, "deploy_path", 5) == 5
    assert not hasattr(env, "deploy_path")
    with pytest.raises(MissingSetting):
        env["deploy_path"]


def test_missing_setting_message_names_the_host():
    env = Env()
    with host_scope(HostScope("web1")):
        with pytest.raises(MissingSetting) as info:
            env.repo_url
    assert info.value.host == "web1"
    assert str(info.value) == "[web1] setting env.repo_url is required but not set"


def test_missing_setting_hint():
    err = MissingSetting("deploy_path", "web2", "an absolute directory")
    assert str(err) == "[web2] setting env.deploy_path is required but not set (an absolute directory)"


def test_dunder_lookups_are_plain_attribute_errors():
    env = Env()
    with pytest.raises(AttributeError) as info:
        env.__wrapped__
    assert not isinstance(info.value, MissingSetting)
    cenv = CallableEnv(env)
    with pytest.raises(AttributeError) as info:
        cenv.__wrapped__
    assert not isinstance(info.value, MissingSetting)


def test_reset_clears_every_shared_layer():
    env = Env()
    env.a = 1
    env.setdefaults(b=1)
    env.set_overrides({"c": 1})
    with settings(env, d=1):
        env.reset()
        assert env.keys() == []
