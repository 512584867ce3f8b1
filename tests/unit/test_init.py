"""fake.cli.init: the starter fabfile and the ``fake init`` entry point."""

import ast
import io
import re

import pytest

import fake.state
from fake.exceptions import ConfigError
from fake.cli.init import FABFILE, run_init, write_fabfile

SETTINGS = [
    "branch", "keep_releases", "linked_dirs", "linked_files", "scm", "healthcheck",
    "healthcheck_timeout", "command_timeout", "connect_timeout", "log_file", "secret_keys",
    "user", "port", "key_filename", "forward_agent",
]

# Defaults that live outside env.setdefaults(): in the runner, the health
# check, main.py, or Fabric's own handling of None.
OTHER_DEFAULTS = {
    "healthcheck": None,
    "healthcheck_timeout": None,
    "command_timeout": None,
    "connect_timeout": 10,
    "log_file": "log/fake.log",
    "secret_keys": [],
    "user": None,
    "port": None,
    "key_filename": None,
    "forward_agent": None,
}

COMMENTED_SETTING = re.compile(r"^# (env\.(\w+) = .*?)\s*(?:#.*)?$")


def commented_settings(text):
    """{key: source} of the ``# env.key = value  # comment`` lines."""
    found = {}
    for line in text.splitlines():
        m = COMMENTED_SETTING.match(line)
        if m:
            found[m.group(2)] = m.group(1)
    return found


def test_writes_fabfile_and_returns_its_path(tmp_path):
    path = write_fabfile(tmp_path)
    assert path == tmp_path / "fabfile.py"
    assert path.read_text() == FABFILE


def test_makes_a_missing_directory(tmp_path):
    path = write_fabfile(tmp_path / "a" / "b")
    assert path.read_text() == FABFILE


def test_refuses_to_overwrite_and_names_the_path(tmp_path):
    existing = tmp_path / "fabfile.py"
    existing.write_text("mine = 1\n")
    with pytest.raises(ConfigError) as info:
        write_fabfile(tmp_path)
    message = str(info.value)
    assert str(existing) in message
    assert "already exists" in message
    assert "\n" not in message
    assert existing.read_text() == "mine = 1\n"


def test_force_overwrites(tmp_path):
    (tmp_path / "fabfile.py").write_text("mine = 1\n")
    assert write_fabfile(tmp_path, force=True).read_text() == FABFILE


def test_refuses_when_a_fabfile_package_would_shadow_it(tmp_path):
    (tmp_path / "fabfile").mkdir()
    with pytest.raises(ConfigError, match="fabfile"):
        write_fabfile(tmp_path)
    assert not (tmp_path / "fabfile.py").exists()


def test_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        write_fabfile(tmp_path / "plain")


def test_template_compiles():
    compile(FABFILE, "fabfile.py", "exec")


@pytest.mark.parametrize("key", SETTINGS + ["deploy_path", "repo_url", "roledefs"])
def test_template_mentions_each_setting(key):
    assert f"env.{key} = " in FABFILE


def test_each_commented_setting_has_a_comment_and_compiles():
    found = commented_settings(FABFILE)
    assert sorted(found) == sorted(SETTINGS)
    for line in FABFILE.splitlines():
        if COMMENTED_SETTING.match(line):
            assert re.search(r"\s# \S", line[2:]), f"no comment on: {line}"
    compile("\n".join(found.values()), "settings", "exec")


def test_commented_values_are_the_defaults(library_defaults):
    # The starter must not lie: a changed default must change it too.
    for key, source in commented_settings(FABFILE).items():
        shown = ast.literal_eval(source.split("=", 1)[1].strip())
        expected = library_defaults[key] if key in library_defaults else OTHER_DEFAULTS[key]
        assert shown == expected, f"env.{key}: starter shows {shown!r}, default is {expected!r}"


def test_template_loads_as_a_fabfile():
    namespace = {"__name__": "fabfile"}
    exec(compile(FABFILE, "fabfile.py", "exec"), namespace)
    env = fake.state.env
    assert set(env.roledefs) == {"staging", "production"}
    for role in env.roledefs.values():
        assert role["hosts"] and role["branch"]
    assert env.deploy_path.startswith("/")
    assert env.repo_url
    assert "restart" in fake.state.registry.tasks
    _, after = fake.state.registry.hooks("finished")
    assert "restart" in after


def test_example_hooks_compile_when_uncommented():
    # The last block of the file is commented-out code, kept working.
    block = FABFILE.rstrip("\n").rsplit("\n\n", 1)[1].splitlines()
    code = [line[2:] if line.startswith("# ") else line[1:] for line in block]
    assert all(line.startswith("#") for line in block)
    text = "\n".join(code)
    assert "after(updated, build)" in text
    namespace = {"__name__": "fabfile"}
    exec(compile(FABFILE + "\n" + text, "fabfile.py", "exec"), namespace)
    assert "build" in fake.state.registry.hooks("updated")[1]


def test_run_init_writes_and_says_what_next(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    path = run_init([], out=out)
    assert path == tmp_path / "fabfile.py"
    assert path.read_text() == FABFILE
    assert f"wrote {path}" in out.getvalue()
    assert "fab -R staging deploy" in out.getvalue()


def test_run_init_into_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    path = run_init(["site"], out=out)
    assert path == tmp_path / "site" / "fabfile.py"
    assert "fab -r site --list" in out.getvalue()


def test_run_init_refuses_then_force_replaces(tmp_path):
    (tmp_path / "fabfile.py").write_text("mine = 1\n")
    with pytest.raises(ConfigError, match="already exists"):
        run_init([str(tmp_path)], out=io.StringIO())
    run_init([str(tmp_path), "--force"], out=io.StringIO())
    assert (tmp_path / "fabfile.py").read_text() == FABFILE


def test_run_init_help_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert run_init(["--help"], out=out) is None
    assert out.getvalue().startswith("usage: fake init")
    assert not (tmp_path / "fabfile.py").exists()


@pytest.mark.parametrize("args, needle", [
    (["--bogus"], "unknown option '--bogus'"),
    (["a", "b"], "one directory, got 2"),
])
def test_run_init_bad_arguments(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        run_init(args, out=io.StringIO())
    assert not list(tmp_path.iterdir())


def test_init_django_writes_the_django_starter(tmp_path):
    from fake.cli.init import run_init
    from fake.cli.init_django import DJANGO_FABFILE

    out = io.StringIO()
    path = run_init([str(tmp_path), "--django"], out=out)
    text = path.read_text()
    assert text == DJANGO_FABFILE
    assert "from fake.tasks.django import *" in text and "from fake.tasks.gunicorn import *" in text
    compile(text, str(path), "exec")
