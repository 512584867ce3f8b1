"""The deploy lock: who holds it, and releasing it with the flow's last command.

The probe takes the lock (``probe.probe_script``); a flow releases it in
its last command on a host when no fabfile task can run after that
(:func:`send_last`), else ``deploy:unlock_own`` does in ``ended``. Either
removes only a lock that holds this flow's token.
"""

import datetime
import json
import os
import posixpath
import socket

from ..shell import Script, quote
from ..state import env, registry
from .commands import current_run, send, unfence_shell
from .layout import ARCHIVE_TEMP, deploy_path, lock_path
from .progress import deploy_state, shared

__all__ = ["describe_lock", "unlock_hint", "unlock_shell", "final_unlock", "send_last", "owner_gone", "take_over",
           "take_lock_hint", "take_over_shell"]


def describe_lock(raw, now=None):
    """'alice@laptop (pid 12, deploy) since 2026-11-22 06:01:02 UTC, 3m 12s ago' from the lock file."""
    info = _parse(raw)
    if info is None:
        return f"an unreadable lock ({(raw or '').strip()[:80]!r})"
    since = info.get("since")
    when = ""
    if isinstance(since, (int, float)):
        stamp = datetime.datetime.fromtimestamp(since, datetime.timezone.utc)
        when = f" since {stamp:%Y-%m-%d %H:%M:%S} UTC"
        if now:
            when += f", {_age(now - since)} ago"
    return f"{info.get('user', '?')}@{info.get('from', '?')} (pid {info.get('pid', '?')}, {info.get('task', '?')}){when}"


def _age(seconds):
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def unlock_hint():
    return f"fab {_selection()} unlock"


def take_lock_hint():
    return f"fab --take-lock {_selection()} {env.get('deploy_action') or 'deploy'}"


def _selection():
    roles = env.get("effective_roles") or []
    return f"-R {','.join(roles)}" if roles else f"-H {env.host_string}"


def owner_gone(raw):
    """Why the run holding this lock is known to be gone ('pid 12 is not running on laptop'), else None.

    Only a run of this machine can be known gone: its pid no longer exists.
    A lock from another machine may belong to a run that is still working.
    """
    info = _parse(raw) or {}
    pid = info.get("pid")
    if info.get("from") != socket.gethostname() or not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"pid {pid} is not running on {info['from']}"
    except OSError:
        pass  # it exists, as another user's process
    return None


def take_over(raw, lock_info):
    """Replace the lock ``raw`` of a run that is gone with ours, only if it is still that lock.

    The lock is renamed aside first: of runs taking over at once, one rename
    wins. If what was renamed is not the dead run's lock it is put back;
    ours is linked in only where no lock is, as the probe does.
    """
    old = (_parse(raw) or {}).get("token")
    if not isinstance(old, str) or not old.isalnum():
        return False
    result = send(take_over_shell(old, lock_info), "take over the lock in " + deploy_path())
    return "taken" in result.stdout.split()


def take_over_shell(old, lock_info):
    """Shell for :func:`take_over`: prints ``taken`` if the lock holding token ``old`` is now ours."""
    lock = quote(lock_path())
    aside = quote(f"{lock_path()}.fake-old.{lock_info['token']}")
    head = quote(json.dumps(lock_info, sort_keys=True)[:-1] + ', "since": ')
    return (
        f"if mv -- {lock} {aside} 2>/dev/null; then\n"
        f"  fake_lock=; {{ read -r fake_lock < {aside}; }} 2>/dev/null || true\n"
        f"  case $fake_lock in\n"
        f"    *{quote(old)}*) fake_new={quote(lock_path() + '.' + lock_info['token'])}\n"
        f"      printf '%s%s}}\\n' {head} \"$(date +%s)\" > \"$fake_new\" && ln \"$fake_new\" {lock} && echo taken"
        f" && {{ {unfence_shell()}; }}\n"  # a failed run's fence: ours now to remove
        f"      rm -f -- \"$fake_new\";;\n"
        f"    *) ln {aside} {lock} 2>/dev/null;;\n"
        f"  esac\n"
        f"  rm -f -- {aside}\n"
        f"fi\n")


def _parse(raw):
    """The lock file's JSON object, or None if it is not one."""
    try:
        info = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def unlock_shell(token):
    """Shell removing the lock only if it holds ``token`` (hex: safe in a case pattern; builtins only).

    What only a lock holder makes goes with it: the file the probe writes
    before linking it in, and a rollback's archive in the making, if a
    dropped connection left either.
    """
    lock, new = quote(lock_path()), quote(f"{lock_path()}.{token}")
    temp = quote(posixpath.join(deploy_path(), ARCHIVE_TEMP))
    return (f"if [ -f {lock} ]; then fake_lock=; {{ read -r fake_lock < {lock}; }} 2>/dev/null || true\n"
            f"  case $fake_lock in *{quote(token)}*) rm -f -- {temp} {temp}.gz {lock};; esac\nfi\n"
            f"if [ -e {new} ]; then rm -f -- {new}; fi\n")


def final_unlock():
    """The unlock shell when the command being built is the flow's last on this host, else None.

    That is when nothing but Fake's empty stages, ``deploy:failed`` and
    ``deploy:unlock_own`` could run after it: then ``ended`` has nothing
    left to send, and the flow saves a round trip. A fabfile hook on
    ``finished`` or ``failed`` (a restart, say) keeps the lock until it is
    done, as before.
    """
    later = current_run().tasks_after()
    token = shared().lock_token
    if later is None or token is None:
        return None
    # deploy:failed may run here if this step fails on another host; past
    # this point it leaves this host as it is, so it needs no lock.
    own = (registry.get("deploy:unlock_own"), registry.get("deploy:failed"))
    # A library step marked ``lock_free`` sends nothing once deploy:finish has begun (gunicorn:restore).
    if any(not any(task is o for o in own) and not getattr(task, "stage", False)
           and not getattr(task, "lock_free", False) for task in later):
        return None
    return unlock_shell(token)


def send_last(commands, label):
    """Send ``commands``, releasing the lock in the same command if it is the flow's last here.

    ``commands`` is a Script, whose last step the release becomes (so it
    runs only if every step did), or shell lines whose last one's status is
    the command's: then the release runs whatever that status (a host that
    could not be repaired is reported, and ``ended`` would release the lock
    anyway). Once sent, ``deploy:unlock_own`` knows not to send another.
    """
    unlock = final_unlock()
    if isinstance(commands, Script):
        if unlock is not None:
            commands.add("release lock", unlock.rstrip("\n"))
        text = commands.render()
    else:
        tail = ["fake_rc=$?", unlock.rstrip("\n"), "exit $fake_rc"] if unlock is not None else []
        text = "\n".join(list(commands) + tail) + "\n"
    result = send(text, label)
    deploy_state().unlocked = unlock is not None
    return result
