"""fake.exceptions: the messages users see, and exit codes."""

import pytest

from fake.exceptions import (
    ConfigError,
    ConnectError,
    FakeError,
    HookCycle,
    HostCommandError,
    HostError,
    Interrupted,
    MissingSetting,
    RoleError,
    StepFailed,
    TaskError,
    TaskFailed,
    UnknownTask,
    on_host,
)


@pytest.mark.parametrize(
    "cls, bases",
    [
        (ConfigError, [FakeError]),
        (MissingSetting, [ConfigError, AttributeError]),
        (RoleError, [ConfigError]),
        (TaskError, [FakeError]),
        (UnknownTask, [TaskError]),
        (HookCycle, [TaskError]),
        (HostError, [FakeError]),
        (ConnectError, [HostError]),
        (HostCommandError, [HostError]),
        (TaskFailed, [HostError]),
        (StepFailed, [FakeError]),
        (Interrupted, [FakeError]),
    ],
)
def test_hierarchy(cls, bases):
    for base in bases:
        assert issubclass(cls, base)


@pytest.mark.parametrize(
    "args, message",
    [
        (("web1", "git fetch", 128, "fatal: x\n"), "[web1] git fetch exited 128: fatal: x"),
        # the tail of stderr: its last three non-blank lines
        (("web1", "make", 2, "a\nb\n\n c \nd\n\n"), "[web1] make exited 2: b | c | d"),
        # stdout when stderr is empty
        (("web1", "test -d x", 1, "", "no such dir\n"), "[web1] test -d x exited 1: no such dir"),
        (("web1", "x", 1, "  \n", "out\n"), "[web1] x exited 1: out"),
        # stderr wins over stdout
        (("web1", "x", 1, "err", "out"), "[web1] x exited 1: err"),
        (("web1", "false", 1), "[web1] false exited 1"),
        # the command on one line
        (("db1", "cd /srv &&\n   ls   -l", 2, "boom"), "[db1] cd /srv && ls -l exited 2: boom"),
        ((None, "x", 3, "e"), "x exited 3: e"),
    ],
)
def test_host_command_error_message(args, message):
    err = HostCommandError(*args)
    assert str(err) == message
    assert err.host == args[0]
    assert err.exited == args[2]


def test_host_command_error_keeps_details_and_shortens():
    long_cmd = "echo " + "x" * 300
    err = HostCommandError("web1", long_cmd, 1, "e" * 1000, "o")
    assert err.command == long_cmd
    assert err.stderr == "e" * 1000 and err.stdout == "o"
    text = str(err)
    head = text.split(" exited ")[0]
    assert head == "[web1] " + long_cmd[:117] + "..."
    tail = text.split(": ", 1)[1]
    assert tail == "..." + "e" * 300
    assert err.reason == text[len("[web1] "):]


def test_host_error_and_task_failed():
    assert str(HostError("web1", "boom")) == "[web1] boom"
    assert str(HostError(None, "boom")) == "boom"
    err = TaskFailed("web1", "restart", KeyError("svc"))
    assert str(err) == "[web1] task restart failed: KeyError: 'svc'"
    assert err.task == "restart" and isinstance(err.error, KeyError)
    assert str(TaskFailed("web1", "t", RuntimeError())) == "[web1] task t failed: RuntimeError: RuntimeError"


@pytest.mark.parametrize(
    "error, expected",
    [
        (ValueError("bad"), "[web1] bad"),
        (ConfigError("[web1] setting env.x is required but not set"), "[web1] setting env.x is required but not set"),
        (MissingSetting("x", "web1"), "[web1] setting env.x is required but not set"),
        (ConfigError("[web2] other host's prefix stays"), "[web1] [web2] other host's prefix stays"),
        (ConfigError("no prefix"), "[web1] no prefix"),
    ],
)
def test_on_host_names_the_host_once(error, expected):
    wrapped = on_host("web1", error)
    assert isinstance(wrapped, HostError)
    assert wrapped.host == "web1"
    assert str(wrapped) == expected
    assert str(wrapped).count("[web1]") == 1


def test_on_host_keeps_host_errors_and_hostless_errors():
    err = HostCommandError("web1", "x", 1)
    assert on_host("web1", err) is err
    assert on_host("web2", err) is err  # already names its own host
    plain = ConfigError("x")
    assert on_host(None, plain) is plain
    assert on_host("", plain) is plain


def test_step_failed_one_line_per_failing_host():
    failures = {
        "web1": HostCommandError("web1", "git fetch", 128, "fatal: x"),
        "web2": HostError("web2", "connection lost"),
    }
    err = StepFailed("deploy:update", failures, done=["web3"], skipped=["web4"])
    assert str(err) == (
        "deploy:update failed on 2 of 3 hosts:\n"
        "  [web1] git fetch exited 128: fatal: x\n"
        "  [web2] connection lost"
    )
    assert err.failures == failures
    assert err.done == ["web3"] and err.skipped == ["web4"]
    assert err.exit_code == 1


def test_step_failed_same_reason_on_several_hosts_is_one_line():
    failures = {h: HostError(h, "locked by bob") for h in ("web1", "web2", "web3")}
    failures["db1"] = HostError("db1", "other")
    err = StepFailed("deploy:check", failures)
    assert str(err) == (
        "deploy:check failed on 4 of 4 hosts:\n"
        "  [web1, web2, web3] locked by bob\n"
        "  [db1] other"
    )


@pytest.mark.parametrize(
    "n_failed, n_done, header",
    [
        (1, 0, "t failed on 1 of 1 host:"),
        (1, 1, "t failed on 1 of 2 hosts:"),
        (2, 3, "t failed on 2 of 5 hosts:"),
    ],
)
def test_step_failed_header(n_failed, n_done, header):
    failures = {f"f{i}": HostError(f"f{i}", f"r{i}") for i in range(n_failed)}
    err = StepFailed("t", failures, done=[f"d{i}" for i in range(n_done)])
    lines = str(err).splitlines()
    assert lines[0] == header
    assert len(lines) == 1 + n_failed


def test_step_failed_names_the_host_of_any_error():
    err = StepFailed("bye", {"web1": SystemExit(3), "web2": RuntimeError("boom")})
    lines = str(err).splitlines()[1:]
    assert len(lines) == 2
    assert "web1" in lines[0] and "3" in lines[0]
    assert "web2" in lines[1] and "boom" in lines[1]


@pytest.mark.parametrize(
    "signame, code",
    [("SIGINT", 130), ("SIGTERM", 143), (None, 130)],
)
def test_interrupted_exit_codes(signame, code):
    err = Interrupted(signame) if signame else Interrupted()
    assert err.exit_code == code
    assert str(err) == f"interrupted by {signame or 'SIGINT'}"
    assert FakeError("x").exit_code == 1


def test_hook_cycle_message():
    err = HookCycle(["a", "b", "a"])
    assert str(err) == "hook cycle: a -> b -> a"
    assert err.names == ["a", "b", "a"]
