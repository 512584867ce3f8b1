"""Fake's own commands on the current host: sent hidden, batched, named by step.

Every stage that changes a host builds one :class:`~fake.shell.Script` and
sends it with :func:`send`; the helpers here add the steps more than one
stage needs (a line in revisions.log, the atomic switch of ``current``).
"""

import getpass
import posixpath

from ..engine import current_run as active_run
from ..exceptions import ConfigError
from ..registry import Task
from ..operations import here, timeout
from ..transport.exec import run_quiet
from ..shell import quote, remove_if_present
from ..state import env, registry
from .layout import current_path, deploy_path

__all__ = ["here", "timeout", "send", "Gate", "current_run", "user", "stage_task", "log_line", "switch_steps", "restore_steps",
           "temp_link_path", "fence_shell", "unfence_shell"]


def send(command, label, gate=None, stdin=None):
    """Send one of Fake's own commands: hidden, never warn-only, errors name the step.

    ``gate`` (a :class:`Gate`) is held from the moment the session is open
    until the command prints the gate's mark, or ends. ``stdin``: a local
    file to stream to the command's standard input.
    """
    conn, host = here()
    opts = dict(host=host, label=label, timeout=timeout(), stdin=stdin)
    if gate is None:
        return run_quiet(conn, command, **opts)
    try:
        return run_quiet(conn, command, before_exec=gate.take, on_line=gate.line, **opts)
    finally:
        gate.free()


class Gate:
    """A concurrency limit held for part of one command: until it prints ``mark``.

    ``git_max_concurrent`` bounds the hosts *fetching* at once; the export
    after the fetch needs no slot, so the next host starts as soon as the
    fetch is done, not when the whole update command is.
    """

    def __init__(self, limit, mark):
        self.limit, self.mark, self.held = limit, mark, False

    def take(self):
        self.limit.__enter__()
        self.held = True

    def line(self, text):
        if text == self.mark:
            self.free()

    def free(self):
        if self.held:
            self.held = False
            self.limit.__exit__(None, None, None)


def current_run():
    """The running invocation; deploy steps have no meaning outside one."""
    run = active_run()
    if run is None:
        raise ConfigError("deploy tasks must run inside a fab invocation or execute()")
    return run


def user():
    return env.get("local_user") or getpass.getuser()


def stage_task(name, doc, **options):
    """Register one of Fake's named steps (``deploy:update``), hooked onto a stage elsewhere."""
    def decorate(fn):
        fn.__doc__ = doc
        return registry.add(Task(fn, name=name, **options))

    return decorate


def log_line(script, label, line):
    """Append one line to revisions.log: the only way Fake writes it (never rewritten)."""
    script.add(label, f"printf '%s\\n' {quote(line)} >> {quote(posixpath.join(deploy_path(), 'revisions.log'))}")


def temp_link_path(name=".current.fake.tmp"):
    """The new link ``mv -T`` renames over ``current`` (the switch's, unless ``name`` says otherwise)."""
    return posixpath.join(deploy_path(), name)


def fence_shell():
    """Shell: put a directory where a switch makes its temp link, so a switch still in flight can never land.

    A switch whose command outlived its timeout may be anywhere in its
    steps (stopped before its ``ln -s``, say). With a directory there, a
    late ``ln -s`` makes its link inside it and a late ``mv -T`` fails (a
    directory cannot replace the ``current`` link). The next switch, made
    under the lock, removes it. A few tries: a late ``ln`` may slip in
    between the ``rm`` and the ``mkdir``.
    """
    tmp = quote(temp_link_path())
    return (f"fake_try=0; while [ $fake_try -lt 5 ]; do mkdir {tmp} 2>/dev/null && break; "
            f"if [ -d {tmp} ] && [ ! -L {tmp} ]; then break; fi; rm -f -- {tmp}; fake_try=$((fake_try + 1)); done")


def unfence_shell():
    """Shell: remove the fence :func:`fence_shell` left, for a run that now holds the lock."""
    tmp = quote(temp_link_path())
    return f"if [ -d {tmp} ] && [ ! -L {tmp} ]; then rm -rf -- {tmp}; fi"


def switch_steps(script, name=None, target=None, temp=None):
    """current -> releases/<name> (or the link text ``target``) atomically.

    A new link renamed over the old one: ``ln -sfn`` would unlink and then
    create, leaving a moment with no current. A fence a failed run left
    where the temp link goes makes it fail, also when it is that run's own
    switch, stalled and going on late; the next run's probe removes the
    fence once it holds the lock.
    """
    target = target or posixpath.join("releases", name)
    tmp = temp or temp_link_path()
    script.add("remove stale temp link", remove_if_present(tmp))  # a fence (a directory) fails this switch
    script.argv("ln -s", "ln", "-s", target, tmp)
    script.argv("mv -T", "mv", "-T", tmp, current_path())


def restore_steps(script, previous, temp=None):
    """current back to the link text it had (``previous``), or removed if it had none."""
    if previous:
        switch_steps(script, target=previous, temp=temp)
    else:
        script.argv("remove current", "rm", "-f", current_path())
