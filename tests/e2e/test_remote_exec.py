"""fake.remote.run_quiet over a real SSH connection: the lean path Fake's own commands take."""

import os
import resource
import time

import fabric
import pytest

from fake.exceptions import ControllerError, HostCommandError
from fake.remote import run_quiet
from fake.ssh import open_target


@pytest.fixture
def conn(make_fleet):
    fleet = make_fleet(1, names=["web1"])
    config = fabric.Config(runtime_ssh_path=str(fleet.ssh_config_path))
    config.load_ssh_config()
    c = open_target("web1", config)
    yield c
    c.close()


def test_a_command_that_never_stops_talking_still_times_out(conn):
    started = time.monotonic()
    with pytest.raises(HostCommandError, match=r"web1.*timed out after 1.5s"):
        run_quiet(conn, "yes", host="web1", label="chatty", timeout=1.5)
    assert time.monotonic() - started < 5


def test_stdin_is_streamed_and_a_missing_file_is_the_controllers_error(conn, tmp_path):
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(3_000_000))  # many windows' worth
    result = run_quiet(conn, "wc -c", host="web1", stdin=str(payload))
    assert result.stdout.strip() == "3000000"
    started = time.monotonic()
    with pytest.raises(ControllerError, match="cannot read .*/nothing-here"):
        run_quiet(conn, "cat >/dev/null", host="web1", stdin=str(tmp_path / "nothing-here"), timeout=30)
    assert time.monotonic() - started < 5
    # a command that stops reading early fails on its own terms, and nothing hangs
    with pytest.raises(HostCommandError) as err:
        run_quiet(conn, "head -c 10 >/dev/null; exit 3", host="web1", stdin=str(payload), timeout=30)
    assert err.value.exited == 3


def test_commands_work_when_the_process_has_more_than_1024_files_open(conn):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    held = [open(os.devnull) for _ in range(1100)]
    try:
        assert run_quiet(conn, "sleep 0.3; echo late", host="web1").stdout == "late\n"
    finally:
        for f in held:
            f.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
