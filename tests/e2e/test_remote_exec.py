"""fake.transport.exec.run_quiet over a real SSH connection: the lean path Fake's own commands take."""

import os
import resource
import time

import fabric
import pytest

from fake.exceptions import ControllerError, HostCommandError
from fake.transport.exec import run_quiet
from fake.transport.ssh import open_target


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


def test_a_slow_upload_that_keeps_moving_is_not_timed_out_but_a_stalled_one_is(conn, tmp_path):
    """command_timeout is for hung commands, not for slow links.

    The host reads 1 MB, then rests 0.3 s, over and over: 8 MB take about 2.5 s,
    longer than the 1 s timeout, but the input never stops moving for 1 s.
    """
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(8 << 20))
    slow_reader = 'n=0; while [ "$(head -c 1048576 | wc -c)" -gt 0 ]; do n=$((n+1)); sleep 0.3; done; echo "$n"'
    started = time.monotonic()
    result = run_quiet(conn, slow_reader, host="web1", stdin=str(payload), timeout=1)
    assert result.stdout.strip() == "8"
    assert time.monotonic() - started > 1.5  # it did take longer than the timeout
    # A host that never reads: the upload stalls once the buffers are full.
    started = time.monotonic()
    with pytest.raises(HostCommandError, match=r"web1.*sending its input made no progress for 1s"):
        run_quiet(conn, "sleep 20", host="web1", stdin=str(payload), timeout=1)
    assert time.monotonic() - started < 5
    # Once the input is all sent, the command has the timeout again, counted from then.
    with pytest.raises(HostCommandError, match=r"web1.*timed out after 1s"):
        run_quiet(conn, "cat >/dev/null; sleep 20", host="web1", stdin=str(payload), timeout=1)
