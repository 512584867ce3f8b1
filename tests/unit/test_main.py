"""fake.main: --set parsing, the program's flags; fake.api's public names."""

import importlib

import pytest

from fake.exceptions import ConfigError
from fake.main import make_program, parse_set


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, {}),
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1,b=two", {"a": "1", "b": "two"}),
        # \, is a literal comma, other escaped characters are themselves
        ("b=x\\,y", {"b": "x,y"}),
        ("a=1,b=x\\,y,flag", {"a": "1", "b": "x,y", "flag": True}),
        ("path=C:\\\\dir", {"path": "C:\\dir"}),
        ("a=\\=", {"a": "="}),
        # a flag without a value is True; an empty value is the empty string
        ("flag", {"flag": True}),
        ("flag=", {"flag": ""}),
        # only the first = splits
        ("url=a=b=c", {"url": "a=b=c"}),
        # blank entries are skipped, keys are stripped, values are kept as given
        (",,a=1,, ,", {"a": "1"}),
        (" a = 1 ", {"a": " 1 "}),
        # values stay strings: no type guessing
        ("keep_releases=3,debug=false", {"keep_releases": "3", "debug": "false"}),
        # later wins
        ("a=1,a=2", {"a": "2"}),
        ("_private=1", {"_private": "1"}),
        ("a=x;y z", {"a": "x;y z"}),
    ],
)
def test_parse_set(text, expected):
    assert parse_set(text) == expected


@pytest.mark.parametrize(
    "text, bad_key",
    [
        ("1a=2", "1a"),
        ("a-b=1", "a-b"),
        ("a.b=1", "a.b"),
        ("=1", ""),
        ("ok=1,bad key=2", "bad key"),
        ("a=1\\,b c=2,x y", "x y"),
    ],
)
def test_parse_set_invalid_key(text, bad_key):
    with pytest.raises(ConfigError) as info:
        parse_set(text)
    assert f"--set: {bad_key!r} is not a valid setting name" in str(info.value)


API_ALL = [
    "env",
    "task",
    "flow",
    "before",
    "after",
    "execute",
    "roles",
    "runs_once",
    "primary",
    "run",
    "sudo",
    "local",
    "put",
    "get",
    "cd",
    "test",
    "call",
    "settings",
    "CallableEnv",
    "FakeError",
    "ConfigError",
    "MissingSetting",
    "HostError",
    "HostCommandError",
    "RemoteError",
    "StepFailed",
]


def test_api_all_is_pinned():
    import fake.api

    assert fake.api.__all__ == API_ALL


@pytest.mark.parametrize("name", API_ALL)
def test_api_names_are_importable(name):
    api = importlib.import_module("fake.api")
    ns = {}
    exec(f"from fake.api import {name}", ns)
    assert ns[name] is getattr(api, name)


def test_api_objects_are_the_shared_ones():
    import fake.api as api
    from fake import exceptions, state
    from fake.env import CallableEnv
    from fake.registry import roles, runs_once
    from fake.transport.exec import cd
    from fake.engine import execute

    assert api.env is state.env
    assert api.task.__self__ is state.registry
    assert api.flow.__self__ is state.registry
    assert api.before.__self__ is state.registry
    assert api.after.__self__ is state.registry
    assert (api.roles, api.runs_once, api.cd, api.execute) == (roles, runs_once, cd, execute)
    assert api.CallableEnv is CallableEnv
    for name in ("FakeError", "ConfigError", "MissingSetting", "HostError", "HostCommandError", "StepFailed"):
        assert getattr(api, name) is getattr(exceptions, name)


def test_api_star_import_gives_exactly_all():
    ns = {}
    exec("from fake.api import *", ns)
    assert sorted(k for k in ns if k != "__builtins__") == sorted(API_ALL)


def test_api_task_registers_in_the_global_registry():
    from fake import state
    from fake.api import task

    @task
    def hello():
        pass

    assert state.registry.tasks["hello"] is hello


def test_api_settings_without_env_argument():
    from fake import state
    from fake.api import settings

    state.env.a = 1
    with settings(a=2, b=3):
        assert (state.env.a, state.env.b) == (2, 3)
    assert state.env.a == 1 and "b" not in state.env


# -- the program's flags -------------------------------------------------------------
@pytest.fixture(scope="module")
def core_args():
    return {long_name(a): a for a in make_program().core_args()}


def long_name(arg):
    return max(arg.names, key=len)


def arg_with_flag(core_args, flag):
    found = [a for a in core_args.values() if flag in a.names]
    assert len(found) <= 1, f"{flag} is used by {[a.names for a in found]}"
    return found[0] if found else None


@pytest.mark.parametrize(
    "flag, name, kind",
    [
        ("R", "roles", str),
        ("roles", "roles", str),
        ("P", "parallel", int),
        ("parallel", "parallel", int),
        ("set", "set", str),
        # Fabric's own flags stay
        ("H", "hosts", str),
        ("S", "ssh-config", str),
        ("i", "identity", list),
        ("l", "list", str),
        ("list", "list", str),
        ("t", "connect-timeout", int),
        ("d", "debug", bool),
        ("dry", "dry", bool),
    ],
)
def test_core_flags(core_args, flag, name, kind):
    arg = arg_with_flag(core_args, flag)
    assert arg is not None, f"no -{flag}"
    assert long_name(arg) == name
    assert arg.kind is kind


def test_dry_lost_its_short_flag(core_args):
    assert core_args["dry"].names == ("dry",)
    assert sorted(arg_with_flag(core_args, "R").names) == ["R", "roles"]


def test_every_flag_is_used_once(core_args):
    flags = [n for a in core_args.values() for n in a.names]
    assert len(flags) == len(set(flags))


def test_new_flags_have_help(core_args):
    for name in ("roles", "parallel", "set"):
        assert core_args[name].help


def test_program_parses_roles_parallel_and_set():
    program = make_program()
    program.parse_core(["fab", "-R", "web,db", "-P", "2", "--set", "a=1\\,2", "-H", "h1", "--dry"])
    args = program.args
    assert args.roles.value == "web,db"
    assert args.parallel.value == 2
    assert args.set.value == "a=1\\,2"
    assert args.hosts.value == "h1"
    assert args.dry.value is True
