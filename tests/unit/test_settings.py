"""fake.settings: values in (as a fabfile or ``--set`` gives them), a value or the exact error out."""

import pytest

from fake import settings
from fake.env import CallableEnv, Env, HostScope, host_scope
from fake.exceptions import ConfigError, MissingSetting

NUMBERS = [
    # value, options, result
    (None, {}, None),
    ("", {}, None),
    ("  ", {}, None),
    (False, {}, None),
    (0, {}, 0),
    ("0", {}, 0),
    ("30", {}, 30),
    (" 30 ", {}, 30),
    (30.0, {}, 30),
    ("30.0", {}, 30),
    ("2.5", {}, 2.5),
    (2.5, {}, 2.5),
    ("1e3", {}, 1000),
    ("0.001", {"minimum": 0.001}, 0.001),
    ("3", {"minimum": 1, "whole": True}, 3),
    ("3.0", {"minimum": 1, "whole": True}, 3),
    (4, {"minimum": 1, "whole": True}, 4),
    ("", {"minimum": 1, "whole": True}, None),
    (False, {"minimum": 1, "whole": True}, None),
]

NUMBER_ERRORS = [
    ("x", {}, "env.k must be a number, got 'x'"),
    ("soon", {"minimum": 0.001}, "env.k must be a number, got 'soon'"),
    ("false", {}, "env.k must be a number, got 'false'"),
    (True, {}, "env.k must be a number, got True"),
    ("nan", {}, "env.k must be a number, got 'nan'"),
    ("inf", {}, "env.k must be a number, got 'inf'"),
    ([1], {}, "env.k must be a number, got [1]"),
    ("-1", {}, "env.k must be at least 0, got '-1'"),
    ("0", {"minimum": 0.001}, "env.k must be at least 0.001, got '0'"),
    ("2.5", {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got '2.5'"),
    (2.5, {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got 2.5"),
    ("0", {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got '0'"),
    (0, {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got 0"),
    ("deep", {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got 'deep'"),
    ("false", {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got 'false'"),
    (True, {"minimum": 1, "whole": True}, "env.k must be a whole number >= 1, got True"),
]

FLAGS = [
    (None, None),
    (True, True), (False, False),
    ("true", True), ("True", True), ("yes", True), ("on", True), ("1", True), (1, True), (" YES ", True),
    ("false", False), ("no", False), ("off", False), ("0", False), (0, False), ("", False),
]

FLAG_ERRORS = [
    ("maybe", "env.k must be true or false, got 'maybe'"),
    ("x", "env.k must be true or false, got 'x'"),
    ("2.5", "env.k must be true or false, got '2.5'"),
    (2, "env.k must be true or false, got 2"),
    ([], "env.k must be true or false, got []"),
]

TEXTS = [
    (None, None), ("", None), ("main", "main"), (" a b ", " a b "), (7, "7"), (2.5, "2.5"),
]

TEXT_ERRORS = [
    (True, "env.k must be text, got True"),
    (["a"], "env.k must be text, got ['a']"),
]


@pytest.mark.parametrize("value, options, expected", NUMBERS)
def test_as_number(value, options, expected):
    result = settings.as_number("k", value, **options)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value, options, message", NUMBER_ERRORS)
def test_as_number_refuses(value, options, message):
    with pytest.raises(ConfigError) as info:
        settings.as_number("k", value, **options)
    assert str(info.value) == message


@pytest.mark.parametrize("value, expected", FLAGS)
def test_as_flag(value, expected):
    assert settings.as_flag("k", value) is expected


@pytest.mark.parametrize("value, message", FLAG_ERRORS)
def test_as_flag_refuses(value, message):
    with pytest.raises(ConfigError) as info:
        settings.as_flag("k", value)
    assert str(info.value) == message


@pytest.mark.parametrize("value, expected", TEXTS)
def test_as_text(value, expected):
    assert settings.as_text("k", value) == expected


@pytest.mark.parametrize("value, message", TEXT_ERRORS)
def test_as_text_refuses(value, message):
    with pytest.raises(ConfigError) as info:
        settings.as_text("k", value)
    assert str(info.value) == message


# -- readers: the same rules, reading the current host's value ---------------------
@pytest.mark.parametrize("reader, given, options, expected", [
    (settings.number, {}, {"default": 10}, 10),
    (settings.number, {"k": None}, {"default": 10}, 10),
    (settings.number, {"k": ""}, {"default": 10}, 10),
    (settings.number, {"k": "4"}, {"default": 10, "minimum": 1, "whole": True}, 4),
    (settings.number, {"k": lambda: "2.5"}, {}, 2.5),
    (settings.flag, {}, {}, False),
    (settings.flag, {}, {"default": None}, None),
    (settings.flag, {"k": ""}, {"default": True}, False),
    (settings.flag, {"k": lambda: "yes"}, {}, True),
    (settings.text, {}, {"default": "main"}, "main"),
    (settings.text, {"k": ""}, {"default": "main"}, "main"),
    (settings.text, {"k": lambda: "dev"}, {}, "dev"),
    (settings.read, {"k": ["a", "b"]}, {}, ["a", "b"]),
    (settings.read, {"k": False}, {"default": 1}, False),
    (settings.required, {"k": lambda: "/srv/app"}, {}, "/srv/app"),
])
def test_readers(reader, given, options, expected):
    env = Env()
    env.update(given)
    assert reader(env, "k", **options) == expected
    assert reader(CallableEnv(env), "k", **options) == expected  # a CallableEnv reads the same


def test_readers_see_the_current_hosts_value_and_raise_the_converters_errors():
    env = Env()
    env.command_timeout = "30"
    scope = HostScope("web1", role_values={"command_timeout": "soon"})
    assert settings.number(env, "command_timeout") == 30
    with host_scope(scope), pytest.raises(ConfigError) as info:
        settings.number(env, "command_timeout", minimum=0.001)
    assert str(info.value) == "env.command_timeout must be a number, got 'soon'"


@pytest.mark.parametrize("given", [{}, {"repo_url": None}, {"repo_url": ""}, {"repo_url": lambda: None}])
def test_required_names_the_setting_and_the_host(given):
    env = Env()
    env.update(given)
    with host_scope(HostScope("deployer@web1", values={"host_string": "deployer@web1"})):
        with pytest.raises(MissingSetting) as info:
            settings.required(env, "repo_url", hint="the repository to deploy")
    assert (info.value.key, info.value.host) == ("repo_url", "deployer@web1")
    assert str(info.value) == "[deployer@web1] setting env.repo_url is required but not set (the repository to deploy)"


def test_required_outside_any_host_names_only_the_setting():
    with pytest.raises(MissingSetting) as info:
        settings.required(Env(), "repo_url")
    assert str(info.value) == "setting env.repo_url is required but not set"
