"""fake.transport and fake.shell: quoting, cd(), Script, PrefixedStream, one command on the local target.

Quoting and scripts are proved by running the produced shell text with a
local ``/bin/sh`` (no SSH): what comes back must be exactly what went in.
"""

import os
import subprocess

import pytest

from fake.shell import Script, join, quote, quote_path
from fake.transport.exec import PrefixedStream, cd, prefixed, with_cwd

NASTY = [
    "plain",
    "",
    "two words",
    "  leading and trailing  ",
    "a;b",
    "; rm -rf /nonexistent-fake-test",
    "it's",
    "'",
    "''",
    'say "hi"',
    '"',
    "$(echo pwned)",
    "${HOME}",
    "$HOME",
    "`echo pwned`",
    "line1\nline2",
    "\n",
    "trailing newline\n",
    "tab\there",
    "-n",
    "--help",
    "-e \\n",
    "back\\slash",
    "*",
    "?[a]",
    "a|b&c>d<e",
    "!x",
    "#comment",
    "~",
    "~/x",
    "é ü 日本",
    "x=1 y=2",
    "&& echo pwned",
]


def sh(script, env=None, cwd=None):
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, env=env, cwd=cwd, timeout=10)


@pytest.mark.parametrize("value", NASTY, ids=[repr(v) for v in NASTY])
def test_quote_round_trips_through_sh(value):
    proc = sh("printf '%s\\n' " + quote(value))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (value + "\n").encode()


def test_join_round_trips_every_value_as_one_argument():
    proc = sh("printf '%s\\n' " + join(NASTY))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(v + "\n" for v in NASTY).encode()
    assert proc.stderr == b""


def test_join_keeps_argument_count():
    proc = sh("set -- " + join(NASTY) + '; echo "$#"')
    assert proc.stdout == f"{len(NASTY)}\n".encode()


@pytest.mark.parametrize("value, expected", [(5, "5"), (None, "None"), (1.5, "1.5")])
def test_quote_accepts_non_strings(value, expected):
    assert quote(value) == expected
    assert sh("printf '%s' " + join([value])).stdout == expected.encode()


@pytest.mark.parametrize(
    "path, expected_text, expected_out",
    [
        ("~", '"$HOME"', "{home}"),
        ("~/", '"$HOME"/\'\'', "{home}/"),
        ("~/app", '"$HOME"/app', "{home}/app"),
        ("~/my app;x", "\"$HOME\"/'my app;x'", "{home}/my app;x"),
        ("~/$(echo no)", "\"$HOME\"/'$(echo no)'", "{home}/$(echo no)"),
        ("~user/app", "'~user/app'", "~user/app"),  # only our own home is special
        ("/srv/app", "/srv/app", "/srv/app"),
        ("/srv/my app", "'/srv/my app'", "/srv/my app"),
        ("a~/b", "'a~/b'", "a~/b"),
    ],
)
def test_quote_path_keeps_tilde_as_home(path, expected_text, expected_out):
    assert quote_path(path) == expected_text
    home = "/home/with space/$x"
    proc = sh("printf '%s' " + quote_path(path), env={"HOME": home, "PATH": os.environ["PATH"]})
    assert proc.stdout.decode() == expected_out.format(home=home)


# -- cd() -------------------------------------------------------------------------
def test_cd_nests_and_quotes():
    assert with_cwd("ls") == "ls"
    with cd("/srv/app"):
        assert with_cwd("ls") == "cd /srv/app && ls"
        with cd("sub dir"):
            assert with_cwd("ls -l") == "cd /srv/app && cd 'sub dir' && ls -l"
            with cd("~/x;y"):
                assert with_cwd("pwd") == "cd /srv/app && cd 'sub dir' && cd \"$HOME\"/'x;y' && pwd"
        assert with_cwd("ls") == "cd /srv/app && ls"
    assert with_cwd("ls") == "ls"


def test_cd_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with cd("/a"):
            raise RuntimeError
    assert with_cwd("x") == "x"


def test_cd_is_per_thread():
    import threading

    seen = {}
    with cd("/main"):
        t = threading.Thread(target=lambda: seen.setdefault("other", with_cwd("x")))
        t.start()
        t.join(5)
    assert seen == {"other": "x"}


def test_cd_commands_work_in_a_real_shell(tmp_path):
    nasty = tmp_path / "a b" / "c;d" / "$(e)"
    nasty.mkdir(parents=True)
    with cd(tmp_path):
        with cd("a b"):
            with cd("c;d"):
                with cd("$(e)"):
                    command = with_cwd("pwd")
    proc = sh(command)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == str(nasty)


# -- Script ------------------------------------------------------------------------
def test_script_success_runs_every_step_and_exits_zero():
    script = Script()
    script.add("first", "echo one")
    script.argv("second", "printf", "%s|", "two words", "it's;$(x)")
    script.add("third", "echo three")
    proc = sh(script.render())
    assert proc.returncode == 0
    assert proc.stdout == b"one\ntwo words|it's;$(x)|three\n"
    assert proc.stderr == b""
    assert Script.failed_step(proc.stderr.decode()) == (None, "")


@pytest.mark.parametrize(
    "label",
    ["middle", "two words", "it's \"odd\"", "$(echo no) `no`", "git fetch; rm -rf x"],
)
def test_script_failing_step_stops_the_rest_and_is_named(tmp_path, label):
    marker = tmp_path / "ran-after"
    script = (
        Script()
        .add("first", "echo first")
        .add(label, "echo 'fatal: bad thing' >&2; exit 3")
        .argv("last", "touch", str(marker))
    )
    proc = sh(script.render())
    assert proc.returncode == 3
    assert proc.stdout == b"first\n"
    assert not marker.exists()
    step, rest = Script.failed_step(proc.stderr.decode())
    assert step == label
    assert rest == "fatal: bad thing"
    assert Script.MARK not in rest


def test_script_failing_command_without_exit_is_caught_by_set_e(tmp_path):
    script = Script().add("a", "true").argv("ls missing", "ls", str(tmp_path / "missing")).add("b", "echo b")
    proc = sh(script.render())
    assert proc.returncode != 0
    assert b"b\n" not in proc.stdout
    step, rest = Script.failed_step(proc.stderr.decode())
    assert step == "ls missing"
    assert "missing" in rest


def test_script_render_text_and_truthiness():
    assert not Script()
    s = Script().add("x y", "true")
    assert s
    text = s.render()
    assert text.startswith("set -e\n")
    assert "fake_step='x y'\ntrue\n" in text
    assert text.endswith("\n")
    assert sh(text).returncode == 0


@pytest.mark.parametrize(
    "stderr, expected",
    [
        (None, (None, "")),
        ("", (None, "")),
        ("just an error\n", (None, "just an error")),
        ("a\nfake-failed-step: git fetch\nb\n", ("git fetch", "a\nb")),
        ("fake-failed-step: start\n", ("start", "")),
        ("x\nfake-failed-step:   spaced  \n", ("spaced", "x")),
        # a marker-looking text not at the start of a line is kept
        ("note: fake-failed-step: no\n", (None, "note: fake-failed-step: no")),
    ],
)
def test_failed_step_parsing(stderr, expected):
    assert Script.failed_step(stderr) == expected


# -- PrefixedStream -------------------------------------------------------------------
def test_prefixed_stream_writes_whole_lines_only(screen):
    out, _ = screen
    s = PrefixedStream("web1")
    s.write("hel")
    assert out.getvalue() == ""
    s.write("lo\nwor")
    assert out.getvalue() == "[web1] hello\n"
    s.write("ld\n\nlast")
    assert out.getvalue() == "[web1] hello\n[web1] world\n[web1] \n"
    s.flush()  # Invoke flushes after each chunk it reads, mid-line too: that is no end of line
    s.write(" line")
    assert out.getvalue() == "[web1] hello\n[web1] world\n[web1] \n"
    s.close()  # the command ended
    assert out.getvalue() == "[web1] hello\n[web1] world\n[web1] \n[web1] last line\n"
    s.close()  # nothing buffered: nothing written
    assert out.getvalue().count("[web1]") == 4


@pytest.mark.parametrize(
    "chunks, expected",
    [
        (["a\nb\nc\n"], "[h] a\n[h] b\n[h] c\n"),
        (["a", "b", "c"], ""),
        (["a", "b", "c\n"], "[h] abc\n"),
        (["\n"], "[h] \n"),
        (["x\n", "y"], "[h] x\n"),
        (["one\r\n"], "[h] one\r\n"),
    ],
)
def test_prefixed_stream_table(screen, chunks, expected):
    out, _ = screen
    s = prefixed("h")
    for c in chunks:
        s.write(c)
    assert out.getvalue() == expected


def test_prefixed_stream_err_goes_to_stderr_and_secrets_are_masked(screen):
    from fake.output import console

    out, err = screen
    console().add_secret("hunter2")
    s = prefixed("h", err=True)
    s.write("password is hunter2\n")
    assert out.getvalue() == ""
    assert err.getvalue() == "[h] password is ********\n"


class SudoTarget:
    """A connection stand-in that records the command sudo would send."""

    config = {"run": {}}

    def __init__(self):
        self.seen = None

    def raw_sudo(self, command, **kwargs):
        self.seen = command

        class Result:
            exited, stdout, stderr = 0, "", ""
        return Result()


def test_sudo_wraps_the_whole_command_so_cd_and_lists_run_as_the_user():
    from fake.transport.exec import run_command

    target = SudoTarget()
    with cd("/srv/my app"):
        run_command(target, "systemctl restart app && echo done", host="h", sudo=True, hide=True)
    assert target.seen == "sh -c " + quote("cd '/srv/my app' && systemctl restart app && echo done")


def test_sudo_without_cd_sends_the_command_as_given_and_checks_the_user():
    """sudoers rules for exact commands (NOPASSWD: /usr/bin/systemctl restart app) must still match."""
    from fake.exceptions import ConfigError
    from fake.transport.exec import run_command

    target = SudoTarget()
    run_command(target, "systemctl restart app", host="h", sudo=True, hide=True)
    assert target.seen == "systemctl restart app"
    with pytest.raises(ConfigError, match="sudo user 'a b' is not a valid user name"):
        run_command(target, "id", host="h", sudo=True, hide=True, user="a b")


# -- run_quiet: Fake's own commands (here on the local target: a real /bin/sh) ----------
def local_target(**run_env):
    from invoke import Config

    from fake.transport.local import LocalTarget

    return LocalTarget(config=Config(overrides={"run": {"env": run_env}}))


def test_run_quiet_captures_output_and_feeds_lines_in_order():
    from fake.transport.exec import run_quiet

    seen = []
    result = run_quiet(local_target(), "echo one; echo two >&2; printf 'three\\nfour'", host="h", on_line=seen.append)
    assert (result.exited, result.stdout, result.stderr) == (0, "one\nthree\nfour", "two\n")
    assert seen == ["one", "three", "four"]


def test_run_quiet_names_the_failed_step_and_never_passes_silently(tmp_path):
    from fake.exceptions import HostCommandError
    from fake.transport.exec import run_quiet

    script = Script().add("fine", "true").add("copy things", f"cp /nonexistent-fake {quote(str(tmp_path))}")
    with pytest.raises(HostCommandError) as err:
        run_quiet(local_target(), script.render(), host="web1", label="deploy:update")
    assert "web1" in str(err.value) and "deploy:update: copy things" in str(err.value)
    assert "nonexistent-fake" in str(err.value)


def test_run_quiet_runs_before_exec_first_and_applies_run_env(tmp_path):
    from fake.transport.exec import run_quiet

    flag = tmp_path / "slot"
    result = run_quiet(local_target(FAKE_X="a b;c"), f"cat {quote(str(flag))}; echo \"$FAKE_X\"", host="h",
                       before_exec=lambda: flag.write_text("taken\n"))
    assert result.stdout == "taken\na b;c\n"


def test_run_quiet_times_out_with_the_host_named():
    import time

    from fake.exceptions import HostCommandError
    from fake.transport.exec import run_quiet

    started = time.monotonic()
    with pytest.raises(HostCommandError, match=r"timed out after 0.3s") as err:
        run_quiet(local_target(), "sleep 5", host="web2", label="switch current", timeout=0.3)
    assert time.monotonic() - started < 3
    assert "web2" in str(err.value)


def test_run_quiet_streams_a_file_to_stdin(tmp_path):
    from fake.transport.exec import run_quiet

    data = tmp_path / "payload"
    data.write_bytes(bytes(range(256)) * 1000)
    result = run_quiet(local_target(), "wc -c; cat >/dev/null", host="h", stdin=str(data))
    assert result.stdout.strip() == "256000"
    assert run_quiet(local_target(), "wc -c", host="h").stdout.strip() == "0"  # no stdin: EOF at once


# -- operations: the current host, and how long its commands may take ----------------
def test_here_names_the_call_outside_a_host_and_gives_connection_and_host_inside():
    from fake.env import HostScope, host_scope
    from fake.exceptions import ConfigError
    from fake.operations import here

    with pytest.raises(ConfigError) as err:
        here("run('uptime')")
    assert str(err.value) == "run('uptime') needs a host: give -H HOST or -R ROLE"
    scope = HostScope("local")
    scope.connection = local_target()
    with host_scope(scope):
        assert here() == (scope.connection, "local")


@pytest.mark.parametrize("given, key, values, expected", [
    (None, "command_timeout", {}, None),
    (None, "command_timeout", {"command_timeout": "30"}, 30),
    (None, "command_timeout", {"command_timeout": ""}, None),
    (5, "command_timeout", {"command_timeout": "30"}, 5),
    (None, "healthcheck_timeout", {"command_timeout": "30", "healthcheck_timeout": "2.5"}, 2.5),
])
def test_timeout_is_the_given_one_or_the_setting(given, key, values, expected):
    from fake.operations import timeout
    from fake.state import env

    env.update(values)
    assert timeout(key, given=given) == expected


def test_run_uses_command_timeout_and_refuses_a_bad_one():
    import time

    from fake.env import HostScope, host_scope
    from fake.exceptions import ConfigError, HostCommandError
    from fake.operations import run, test
    from fake.state import env

    scope = HostScope("local")
    scope.connection = local_target()
    with host_scope(scope):
        env.command_timeout = "0.3"
        started = time.monotonic()
        with pytest.raises(HostCommandError, match=r"\[local\] sleep 5 exited -: timed out after 0.3s"):
            run("sleep 5", hide=True)
        assert time.monotonic() - started < 3
        assert test("true", timeout=5)
        env.command_timeout = "soon"
        with pytest.raises(ConfigError, match="env.command_timeout must be a number, got 'soon'"):
            run("true")


def test_making_a_connection_never_writes_the_shared_config(tmp_path):
    """Fabric adds ssh_config's IdentityFile to the config's own connect_kwargs when it is
    given none; that write re-merges a config other hosts' threads are reading."""
    import fabric

    from fake.transport.ssh import HostConnection, connection_kwargs

    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host web1\n  HostName 127.0.0.1\n  IdentityFile /tmp/some-key\n  ConnectTimeout 5\n")
    config = fabric.Config(runtime_ssh_path=str(ssh_config))
    config.load_ssh_config()
    kwargs, timeout = connection_kwargs(config, "web1")
    conn = HostConnection("web1", config=config, connect_kwargs=kwargs, connect_timeout=timeout)
    assert conn.connect_kwargs["key_filename"] == ["/tmp/some-key"]
    assert "key_filename" not in config.connect_kwargs and not config._modifications
