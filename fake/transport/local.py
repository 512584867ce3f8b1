"""This machine as a host: ``fab -H local`` runs the same commands here, without SSH."""

import os
import shutil
import signal
import subprocess

import invoke

from .exec import HostCommands, Lines, TimedOut, decode, open_stdin, run_env

__all__ = ["LOCAL", "LocalTarget"]

LOCAL = "local"


class LocalTarget(HostCommands, invoke.Context):
    """The built-in ``local`` host: commands run here, without SSH."""

    host = LOCAL
    fake_host = LOCAL
    user = None

    def __init__(self, config=None):
        super().__init__(config=config)

    @property
    def is_connected(self):
        return True

    def open(self):
        pass

    def close(self):
        pass

    def exec_captured(self, command, timeout=None, before_exec=None, on_line=None, stdin=None):
        return exec_local(self, command, timeout, before_exec, on_line, stdin)

    def put(self, local, remote=None, preserve_mode=True):
        remote = os.path.expanduser(remote or os.path.basename(local))
        if os.path.isdir(remote):
            remote = os.path.join(remote, os.path.basename(local))
        shutil.copy2(local, remote) if preserve_mode else shutil.copyfile(local, remote)
        return remote

    def get(self, remote, local=None, preserve_mode=True):
        remote = os.path.expanduser(remote)
        local = local or os.path.basename(remote)
        if os.path.isdir(local):
            local = os.path.join(local, os.path.basename(remote))
        shutil.copy2(remote, local) if preserve_mode else shutil.copyfile(remote, local)
        return local


def exec_local(target, command, timeout, before_exec, on_line, stdin=None):
    """``/bin/sh -c command`` here, output captured: what run_quiet does over SSH, without SSH."""
    if before_exec is not None:
        before_exec()
    env = dict(os.environ, **run_env(target))
    # Its own process group, so a timeout stops the command's children too
    # (they hold the output pipes open).
    with open_stdin(stdin) or open(os.devnull, "rb") as source:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=source, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimedOut() from None
    lines = Lines(on_line)
    lines.feed(out)
    lines.close()
    return proc.returncode, decode(out), decode(err)
