"""The current host during a deploy: its state in one read, and Fake's own commands on it.

``inspect()`` is the one read-only command a stage needs (releases, current,
lock, mirror, linked files, and the scm's probe); everything else is decided
locally from its result.
"""

import datetime
import getpass
import json
import posixpath

from ..exceptions import ConfigError
from ..registry import Task
from ..operations import here, timeout
from ..transport.exec import run_quiet
from ..shell import block, quote, remove_if_present, unblock
from ..engine import current_run as active_run
from ..scm.base import PROBE_PREFIX as SCM_PROBE_PREFIX
from ..state import env, registry
from .layout import (
    BAD_MARKER, LOCK_FILE, RELEASE_NAME, cenv, current_path, deploy_path, linked_paths, lock_path, repo_path,
    shared_path,
)

__all__ = ["HostState", "probe_script", "inspect", "describe_lock", "here", "remote", "current_run",
           "facts", "user", "where", "unlock_hint", "stage_task", "Gate",
           "log_line", "switch_steps", "unlock_shell", "unlock_if_last", "final_unlock"]


class HostState:
    """What the probe saw on one host."""

    def __init__(self):
        self.now = None
        self.current = None
        self.releases = {}
        self.bad = set()
        self.lock = None
        self.locked_by_us = False
        self.lock_failed = False
        self.mirror = False
        self.missing = []
        self.scm_lines = []
        self.log = []

    @property
    def live(self):
        if not self.current:
            return None
        name = posixpath.basename(self.current.rstrip("/"))
        return name if RELEASE_NAME.match(name) else None

    @classmethod
    def parse(cls, text):
        st = cls()
        for line in unblock(text.splitlines()):
            kind, _, rest = line.partition(" ")
            if kind == "now":
                st.now = int(rest)
            elif kind == "current":
                st.current = rest
            elif kind == "release":
                name, rev, *flags = rest.split(" ")
                st.releases[name] = None if rev in ("", "-") else rev
                if "bad" in flags:
                    st.bad.add(name)
            elif kind == "lock":
                st.lock = rest
            elif kind == "locked":
                st.locked_by_us = True
            elif kind == "lockfail":
                st.lock_failed = True
            elif kind == "mirror":
                st.mirror = True
            elif kind == "missing":
                st.missing.append(rest)
            elif kind == "log":
                st.log.append(rest)
            elif kind in ("remote", "remote-error", "noref") or kind.startswith(SCM_PROBE_PREFIX):
                st.scm_lines.append(line)
        return st


def probe_script(lock_info=None, scm=None, with_log=False):
    """Shell that reports a host's deploy state, and takes the lock if asked.

    The lock is taken only when nothing else is wrong, with noclobber so two
    deploys racing for it cannot both win. Builtins do the reading (``read``,
    not ``cat``, per release): the probe starts ``date`` and ``readlink``,
    and the scm's check, and nothing else on a host in order. Values read
    from files go out through ``printf '%s'``: dash's ``echo`` would act
    on backslashes in them.
    """
    d = quote(deploy_path())
    lock = f"{d}/{LOCK_FILE}"
    lines = [
        "problems=0",
        "now=$(date +%s)",
        'echo "now $now"',
        f"if [ -L {d}/current ]; then printf 'current %s\\n' \"$(readlink {d}/current)\"; fi",
        f"for r in {d}/releases/*; do",
        '  [ -d "$r" ] || continue',
        '  rev=; { read -r rev < "$r/REVISION"; } 2>/dev/null || true',
        f'  if [ -e "$r/{BAD_MARKER}" ]; then bad=bad; else bad=; fi',
        "  printf 'release %s %s %s\\n' \"${r##*/}\" \"${rev:--}\" \"$bad\"",
        "done",
        f"if [ -f {lock} ]; then printf 'lock %s\\n' \"$(head -c 2000 {lock} | tr '\\n' ' ')\"; problems=1; fi",
        f"if [ -d {d}/repo ]; then echo mirror; fi",
    ]
    if with_log:
        lines.append(f"if [ -f {d}/revisions.log ]; then fake_log=$(tail -n 500 {d}/revisions.log); "
                     f"{block('log', 'fake_log')}; fi")
    if scm is not None:
        files = dict.fromkeys(p for kind, p in linked_paths() if kind == "linked_files")
        for path in files:
            target = quote(posixpath.join(shared_path(), path))
            lines.append(f"if [ ! -e {target} ]; then echo missing {quote(path)}; problems=1; fi")
        lines.append(scm.probe(cenv.get("repo_url"), cenv.get("branch"), repo_path=repo_path()))
    if lock_info is not None:
        head = quote(json.dumps(lock_info, sort_keys=True)[:-1] + ', "since": ')
        # set -C in this shell, not a subshell: one fork fewer on every host.
        lines += [
            'if [ "$problems" -eq 0 ]; then',
            f"  [ -d {d} ] || mkdir -p {d}",
            "  set -C",
            f"  if {{ printf '%s%s}}\\n' {head} \"$now\" > {lock}; }} 2>/dev/null; then echo locked;",
            f"  elif [ -e {lock} ]; then printf 'lock %s\\n' \"$(cat {lock} 2>/dev/null | tr '\\n' ' ')\";",
            "  else echo lockfail; fi",
            "  set +C",
            "fi",
        ]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def remote(command, label, gate=None, stdin=None):
    """One of Fake's own commands: hidden, never warn-only, errors name the step.

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


def inspect(lock_info=None, scm=None, with_log=False):
    result = remote(probe_script(lock_info, scm, with_log), "inspect " + deploy_path())
    return HostState.parse(result.stdout)


def describe_lock(raw, now=None):
    """'alice@laptop (pid 12, deploy) since 2026-11-22 06:01:02 UTC, 3m 12s ago' from the lock file."""
    try:
        info = json.loads(raw)
    except (TypeError, ValueError):
        info = None
    if not isinstance(info, dict):
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
    roles = env.get("effective_roles") or []
    where = f"-R {','.join(roles)}" if roles else f"-H {env.host_string}"
    return f"fab {where} unlock"


def user():
    return env.get("local_user") or getpass.getuser()


def current_run():
    run = active_run()
    if run is None:
        raise ConfigError("deploy tasks must run inside a fab invocation or execute()")
    return run


def facts():
    return current_run().collect("fake_state").get(env.host_string) or HostState()




def stage_task(name, doc, **options):
    def decorate(fn):
        fn.__doc__ = doc
        return registry.add(Task(fn, name=name, **options))

    return decorate


def where():
    roles = env.get("effective_roles") or []
    return ",".join(roles) if roles else ",".join(current_run().flow_hosts())


def log_line(script, label, line):
    """Append one line to revisions.log: the only way Fake writes it (never rewritten)."""
    script.add(label, f"printf '%s\\n' {quote(line)} >> {quote(posixpath.join(deploy_path(), 'revisions.log'))}")


def switch_steps(script, name=None, target=None):
    """current -> releases/<name> (or the link text ``target``) atomically.

    A new link renamed over the old one: ``ln -sfn`` would unlink and then
    create, leaving a moment with no current.
    """
    target = target or posixpath.join("releases", name)
    tmp = posixpath.join(deploy_path(), ".current.fake.tmp")
    script.add("remove stale temp link", remove_if_present(tmp))
    script.argv("ln -s", "ln", "-s", target, tmp)
    script.argv("mv -T", "mv", "-T", tmp, current_path())


def unlock_shell(token):
    """Shell removing the lock only if it holds ``token`` (hex: safe in a case pattern; builtins only)."""
    lock = quote(lock_path())
    return (f"if [ -f {lock} ]; then fake_lock=; {{ read -r fake_lock < {lock}; }} 2>/dev/null || true\n"
            f"  case $fake_lock in *{quote(token)}*) rm -f -- {lock};; esac\nfi\n")


def final_unlock():
    """The unlock shell when the command being built is the flow's last on this host, else None.

    That is when nothing but Fake's empty stages, ``deploy:failed`` and
    ``deploy:unlock_own`` could run after it: then ``ended`` has nothing
    left to send, and the flow saves a round trip. A fabfile hook on
    ``finished`` or ``failed`` (a restart, say) keeps the lock until it is
    done, as before. The caller sets ``env.fake_unlocked`` once the command
    has run, so ``deploy:unlock_own`` sends nothing more.
    """
    later = current_run().tasks_after()
    token = current_run().once("lock_token", lambda: None)
    if later is None or token is None:
        return None
    # deploy:failed may run here if this step fails on another host; past
    # this point it leaves this host as it is, so it needs no lock.
    own = (registry.get("deploy:unlock_own"), registry.get("deploy:failed"))
    if any(not any(task is o for o in own) and not getattr(task, "stage", False) for task in later):
        return None
    return unlock_shell(token)


def unlock_if_last(script):
    """Add the lock's release to ``script`` if it is the flow's last command here; True if added."""
    shell = final_unlock()
    if shell is None:
        return False
    script.add("release lock", shell.rstrip("\n"))
    return True
