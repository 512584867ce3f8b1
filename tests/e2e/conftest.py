"""Fixtures for end-to-end tests: real SSH hosts and a way to run ``fab``.

Tests drive the installed console scripts in subprocesses, exactly as a user
would, so nothing here imports ``fake``: the harness works (and its own tests
pass) whether or not the package is importable.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.sshd import Fleet

# The console scripts of the venv running pytest, not whatever is on PATH.
# Once Fake is installed, ``fab`` is Fake's entry point, not plain Fabric's.
fab_bin = Path(sys.executable).parent / "fab"
fake_bin = Path(sys.executable).parent / "fake"
# Vanilla Fabric, for checks that must not depend on Fake.
plain_fab = [sys.executable, "-m", "fabric"]


def run_fab(args, cwd, fleet=None, timeout=60, env=None, input=None,
            program=fab_bin):
    """Run ``fab [-S fleet's ssh_config] *args`` in ``cwd``; never raises on
    a non-zero exit (check ``returncode``; see `explain`).

    ``env`` entries are layered over os.environ.  stdin is /dev/null unless
    ``input`` is given, so a stray prompt fails instead of hanging.
    ``program`` (a path or an argv prefix list) may be `fake_bin` or
    `plain_fab` instead.
    """
    cmd = [str(p) for p in (
        program if isinstance(program, (list, tuple)) else [program])]
    if fleet is not None:
        cmd += ["-S", str(fleet.ssh_config_path)]
    cmd += [str(a) for a in args]
    stdin = {"input": input} if input is not None else {
        "stdin": subprocess.DEVNULL}
    return subprocess.run(
        cmd, cwd=cwd, env=dict(os.environ, **(env or {})),
        capture_output=True, text=True, timeout=timeout, **stdin,
    )


def default_sigint():
    """``preexec_fn`` for a fab that a test interrupts with SIGINT.

    Python turns SIGINT into KeyboardInterrupt only if it starts with the
    default disposition; a test run started as a background job or under
    nohup passes SIGINT on ignored, and the child would never see Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def explain(proc):
    """Describe a finished process for assertion messages."""
    cmd = " ".join(str(a) for a in proc.args)
    return (f"\n$ {cmd}\nexit code: {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")


@pytest.fixture
def make_fleet():
    """Factory: ``make_fleet(n, names=None) -> Fleet``, closed at teardown."""
    fleets = []

    def _make(n, names=None):
        fleet = Fleet(n, names=names)
        fleets.append(fleet)
        return fleet

    yield _make
    for fleet in fleets:
        fleet.close()


@pytest.fixture
def fleet3(make_fleet):
    """Fresh hosts web1, web2, db1 (startup takes well under a second)."""
    return make_fleet(3, names=["web1", "web2", "db1"])


@pytest.fixture
def project():
    """An empty 0755 directory for a test's fabfile.py.

    Not pytest's tmp_path: its parents are 0700, and hosts log in as the
    unprivileged test user, who must be able to read what tests put here
    (e.g. a git repository to deploy).
    """
    path = Path(tempfile.mkdtemp(prefix="fake-project-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fab(project):
    """`run_fab` with ``cwd`` defaulting to the `project` directory."""
    def _fab(args, cwd=None, **kwargs):
        return run_fab(args, cwd or project, **kwargs)
    return _fab
