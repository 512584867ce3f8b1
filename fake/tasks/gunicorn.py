"""gunicorn: started if it is not running, else replaced by a new master that serves the new release.

``from fake.tasks.gunicorn import *`` brings :mod:`fake.tasks.python` and
hooks ``gunicorn:reload`` onto ``published`` (so the health check, which
runs next, sees the new code; in batches, each batch's hosts), and
``gunicorn:restore`` onto ``failed`` (a host whose gunicorn was moved to the
new release and then switched back is moved back too).

Why not ``kill -HUP``: HUP makes the same master start new workers, in the
directory it resolved ``current`` to when it started and with the Python it
started with, so it can go on serving the old release. Instead:

1. gunicorn is started as ``current/.venv/bin/python current/.venv/bin/gunicorn
   --chdir current ...``: every path goes through the ``current`` symlink.
2. ``USR2`` makes the old master exec a new one with that same command line:
   the paths now resolve to the new release, its virtualenv and its code. The
   new master inherits the listening socket, so no connection is refused.
3. With ``--preload`` (``gunicorn_preload``, on by default) the new master
   imports the app before it writes its pidfile (``<pidfile>.2``); an app
   that cannot load makes it exit instead, and the old master keeps serving.
4. Once the new master is up, the old one gets ``TERM``: it stops accepting
   and its workers finish the requests they hold. The new master renames its
   pidfile to ``<pidfile>`` when it sees its parent gone.

With ``gunicorn_systemd_unit`` set, gunicorn is systemd's to run:
``systemctl restart UNIT`` (``reload`` with ``gunicorn_systemd_reload``),
through ``sudo -n`` when ``gunicorn_sudo`` is on.
"""

import posixpath
from dataclasses import dataclass

from ..exceptions import ConfigError, MissingSetting
from ..settings import as_text, flag, number
from ..shell import join, quote
from ..state import env, registry
from .commands import current_run, send, stage_task
from .layout import cenv, current_path, shared_path
from .progress import deploy_state
from .python import *  # noqa: F401,F403
from .python import __all__ as _python_all
from .python import venv_name

__all__ = list(_python_all) + ["gunicorn_pidfile", "gunicorn_log", "reload_shell", "stop_shell"]

env.setdefaults(
    gunicorn_bind="127.0.0.1:8000",
    gunicorn_workers=None,
    gunicorn_options=[],
    gunicorn_preload=True,
    gunicorn_timeout=60,
    gunicorn_systemd_unit=None,
    gunicorn_systemd_reload=False,
    gunicorn_sudo=False,
)

STARTED, RELOADED = "fake-gunicorn started", "fake-gunicorn reloaded"


@dataclass
class GunicornState:
    """This host's gunicorn in the running flow."""

    moved: bool = False  # a master now serves what current pointed to when it was started


def gunicorn_pidfile():
    return as_text("gunicorn_pidfile", cenv.get("gunicorn_pidfile")) or posixpath.join(shared_path(), "gunicorn.pid")


def gunicorn_log():
    return as_text("gunicorn_log", cenv.get("gunicorn_log")) or posixpath.join(shared_path(), "log", "gunicorn.log")


def _unit():
    return as_text("gunicorn_systemd_unit", cenv.get("gunicorn_systemd_unit"))


def _app():
    app = as_text("gunicorn_app", cenv.get("gunicorn_app"))
    if not app:
        raise MissingSetting("gunicorn_app", env.get("host_string"),
                             "the WSGI application gunicorn serves, e.g. 'mysite.wsgi:application'")
    return app


def _options():
    value = env.get("gunicorn_options") or []
    if isinstance(value, str):
        raise ConfigError(f"env.gunicorn_options must be a list of arguments, got {value!r}")
    return [str(v) for v in value]


def _check():
    if _unit():
        return
    _app()
    _options()
    number(env, "gunicorn_timeout", minimum=1)
    number(env, "gunicorn_workers", minimum=1, whole=True)


registry.preflight("deploy", _check)
registry.preflight("rollback", _check)


def _command():
    """argv that starts gunicorn from ``current``, every path through the symlink (see the module doc)."""
    bin_dir = posixpath.join(current_path(), venv_name(), "bin")
    argv = [posixpath.join(bin_dir, "python"), posixpath.join(bin_dir, "gunicorn"),
            "--daemon", "--pid", gunicorn_pidfile(), "--chdir", current_path(),
            "--bind", as_text("gunicorn_bind", cenv.get("gunicorn_bind")) or "127.0.0.1:8000",
            "--error-logfile", gunicorn_log(), "--capture-output"]
    workers = number(env, "gunicorn_workers", minimum=1, whole=True)
    if workers:
        argv += ["--workers", str(workers)]
    if flag(env, "gunicorn_preload", True):
        argv.append("--preload")
    module = as_text("django_settings", cenv.get("django_settings"))
    if module:
        argv += ["--env", f"DJANGO_SETTINGS_MODULE={module}"]
    return argv + _options() + [_app()]


_HELPERS = """\
fake_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
fake_num() { if [ -f "$1" ]; then tr -cd 0-9 < "$1"; fi; }
fake_fail() {
  echo "$1" >&2
  if [ -f "$fake_log" ]; then tail -n 4 "$fake_log" | sed 's/^/gunicorn: /' >&2; fi
  exit 1
}
fake_kids() { if command -v ps >/dev/null 2>&1; then ps -A -o pid= -o ppid= | awk -v p="$1" '$2 == p {print $1}'; fi; }
"""


def reload_shell():
    """Shell that starts gunicorn from ``current``, or moves a running one to it (USR2, then TERM the old)."""
    argv = _command()
    limit = int(number(env, "gunicorn_timeout", minimum=1) or 60) * 10
    pid, log = gunicorn_pidfile(), gunicorn_log()
    gunicorn = argv[1]
    strict = "--preload" in argv
    workers = number(env, "gunicorn_workers", minimum=1, whole=True) or 1
    return "\n".join([
        f"fake_pid={quote(pid)}; fake_log={quote(log)}; fake_limit={limit}",
        _HELPERS,
        f"mkdir -p -- {quote(posixpath.dirname(pid))} {quote(posixpath.dirname(log))} || exit 1",
        f"[ -x {quote(gunicorn)} ] || fake_fail {quote(f'{gunicorn} is missing: add gunicorn to the requirements')}",
        'fake_old=$(fake_num "$fake_pid")',
        # A pid left by a gunicorn that died may belong to another program by now: never signal that.
        'if fake_alive "$fake_old" && command -v ps >/dev/null 2>&1; then',
        '  case "$(ps -p "$fake_old" -o args= 2>/dev/null)" in *gunicorn*) ;; *) fake_old= ;; esac',
        'fi',
        'if ! fake_alive "$fake_old"; then',
        '  rm -f -- "$fake_pid" "$fake_pid.2"',
        f"  cd {quote(current_path())} || exit 1",
        f"  {join(argv)} || fake_fail 'gunicorn did not start'",
        "  fake_i=0",
        '  while :; do fake_new=$(fake_num "$fake_pid"); if fake_alive "$fake_new"; then break; fi',
        '    fake_i=$((fake_i + 1)); [ $fake_i -le $fake_limit ] || fake_fail "gunicorn did not start: no live pid in $fake_pid"',
        "    sleep 0.1; done",
        f'  echo "{STARTED} $fake_new"; exit 0',
        "fi",
        'fake_before=" $(fake_kids "$fake_old" | tr "\\n" " ")"',
        f"fake_workers={workers}; fake_n=0; for fake_k in $fake_before; do fake_n=$((fake_n + 1)); done",
        '[ $fake_n -gt 0 ] || fake_n=$fake_workers',
        # Strict hand-over (preload): the old workers stop first, so no answer comes from the old
        # release once one came from the new; requests wait in the socket's queue meanwhile.
        f"fake_strict={1 if strict else 0}",
        'if [ $fake_strict = 1 ]; then kill -WINCH "$fake_old" || fake_fail "cannot signal gunicorn master $fake_old"; fi',
        'kill -USR2 "$fake_old" || fake_fail "cannot signal gunicorn master $fake_old"',
        # A new master that never came up: the old one gets its workers back (TTIN, one at a
        # time: signals of one kind that arrive together count once), forked from its own app.
        'fake_back() {',
        '  if [ $fake_strict = 1 ]; then fake_j=0; while [ $fake_j -lt $fake_n ]; do kill -TTIN "$fake_old"; sleep 0.2; fake_j=$((fake_j + 1)); done; fi',
        '  fake_fail "$1; the old master ($fake_old) serves the release it had"',
        '}',
        "fake_i=0; fake_seen=",
        "while :; do",
        '  fake_new=$(fake_num "$fake_pid.2")',
        '  if [ -n "$fake_new" ] && [ "$fake_new" != "$fake_old" ] && fake_alive "$fake_new"; then break; fi',
        '  for fake_k in $(fake_kids "$fake_old"); do case "$fake_before" in *" $fake_k "*) ;; *) fake_seen="$fake_seen $fake_k";; esac; done',
        '  if [ -n "$fake_seen" ]; then fake_gone=1; for fake_k in $fake_seen; do if fake_alive "$fake_k"; then fake_gone=; fi; done',
        '    [ -z "$fake_gone" ] || fake_back "the new gunicorn master exited before it was ready"; fi',
        '  fake_i=$((fake_i + 1)); [ $fake_i -le $((fake_limit * 2)) ] || fake_back "no new gunicorn master in time"',
        "  sleep 0.05",
        "done",
        'kill -TERM "$fake_old" 2>/dev/null',
        "fake_i=0",
        'while fake_alive "$fake_old" || [ "$(fake_num "$fake_pid")" != "$fake_new" ]; do',
        '  fake_i=$((fake_i + 1)); [ $fake_i -le $fake_limit ] || fake_fail "old gunicorn master $fake_old did not hand over to $fake_new in time"',
        "  sleep 0.1",
        "done",
        f'echo "{RELOADED} $fake_old $fake_new"',
    ]) + "\n"


def stop_shell():
    """Shell that stops the gunicorn of ``gunicorn_pidfile`` gracefully (TERM) and waits for it."""
    limit = int(number(env, "gunicorn_timeout", minimum=1) or 60) * 10
    return "\n".join([
        f"fake_pid={quote(gunicorn_pidfile())}; fake_log={quote(gunicorn_log())}; fake_limit={limit}",
        _HELPERS,
        'fake_old=$(fake_num "$fake_pid")',
        'if ! fake_alive "$fake_old"; then echo "gunicorn is not running"; exit 0; fi',
        'kill -TERM "$fake_old"; fake_i=0',
        'while fake_alive "$fake_old"; do fake_i=$((fake_i + 1))',
        '  [ $fake_i -le $fake_limit ] || fake_fail "gunicorn master $fake_old did not stop in time"; sleep 0.1; done',
        'echo "gunicorn stopped ($fake_old)"',
    ]) + "\n"


def _systemd_shell():
    verb = "reload" if flag(env, "gunicorn_systemd_reload", False) else "restart"
    argv = ["systemctl", verb, _unit()]
    if flag(env, "gunicorn_sudo", False):
        argv = ["sudo", "-n", *argv]
    return join(argv)


def _state():
    return current_run().flow().of_host(GunicornState, env.host_string)


@stage_task("gunicorn:reload", "Start gunicorn from current, or move the running one to the release current points to.")
def _reload():
    if _unit():
        send(_systemd_shell(), "gunicorn:reload (systemd)")
    else:
        result = send(reload_shell(), "gunicorn:reload")
        current_run().annotate(env.host_string, gunicorn=result.stdout.strip().splitlines()[-1:])
    _state().moved = True


@stage_task("gunicorn:restore", "After a switch-back, move gunicorn back to the release current points to again.")
def _restore():
    if not _state().moved or deploy_state().published:
        return  # gunicorn never left the old release here, or current was not switched back
    _reload()


@stage_task("gunicorn:stop", "Stop gunicorn gracefully (systemctl stop with a unit).")
def _stop():
    if _unit():
        argv = ["systemctl", "stop", _unit()]
        send(join(["sudo", "-n", *argv] if flag(env, "gunicorn_sudo", False) else argv), "gunicorn:stop")
    else:
        send(stop_shell(), "gunicorn:stop")


# Once deploy:finish has begun nothing is switched back, so restore sends nothing: the flow's
# last command may still release the lock.
_restore.lock_free = True
after("published", "gunicorn:reload")  # noqa: F405  (the health check runs next)
after("failed", "gunicorn:restore")  # noqa: F405  (after deploy:failed has switched current back)
