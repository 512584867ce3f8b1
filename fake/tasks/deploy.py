"""Capistrano's deploy, filled into the framework's stages.

``from fake.tasks.deploy import *`` in a fabfile brings the flow. Under
``env.deploy_path`` each host has::

    repo/                  bare mirror of env.repo_url
    releases/<UTC stamp>/  one tree per deploy, with REVISION
    shared/                linked_dirs and linked_files live here, never lost
    current -> releases/<stamp>
    revisions.log          appended to, never rewritten
    deploy.lock            while a deploy or rollback runs

Remote work per host: one read-only probe that also takes the lock
(starting), then one batched command per stage that changes something, and
one to release the lock. Everything else is decided here, locally.
"""

import datetime
import getpass
import json
import os
import posixpath
import re
import socket
import uuid

from ..env import CallableEnv, current_scope, number
from ..exceptions import ConfigError, HostError, MissingSetting
from ..output import QUIET, console
from ..registry import Task
from ..remote import Script, join, quote, require_target, run_command
from ..runner import active_run
from ..scm import strategy
from ..scm.base import PROBE_PREFIX as SCM_PROBE_PREFIX, Resolved, Target
from ..state import env, registry
from .framework import (  # noqa: F401  (re-exported for fabfiles)
    deploy, ended, failed, finished, finishing, finishing_rollback, published,
    publishing, reverted, reverting, rollback, started, starting, updated, updating,
)

__all__ = [
    "env", "before", "after", "deploy", "rollback", "unlock", "releases",
    "starting", "started", "updating", "updated", "publishing", "published",
    "finishing", "finished", "reverting", "reverted", "finishing_rollback", "failed", "ended",
    "deploy_path", "releases_path", "shared_path", "repo_path", "current_path", "release_path",
]

before = registry.before
after = registry.after
cenv = CallableEnv(env)

env.setdefaults(
    branch=None,
    keep_releases=5,
    linked_dirs=[],
    linked_files=[],
    scm="git",
)

RELEASE_NAME = re.compile(r"^\d{14}$")
STAMP = "%Y%m%d%H%M%S"
LOCK_FILE = "deploy.lock"
BAD_MARKER = ".fake-bad"  # in a release that failed its health check; never a rollback target


# -- paths ------------------------------------------------------------------
def deploy_path():
    value = cenv.get("deploy_path")
    if not value:
        scope = current_scope()
        raise MissingSetting("deploy_path", scope.host if scope else None,
                             "the directory on each host that holds releases/, shared/ and current")
    value = str(value)
    if not value.startswith("/"):
        raise ConfigError(f"env.deploy_path must be an absolute path, got {value!r}")
    return value.rstrip("/") or "/"


def releases_path():
    return posixpath.join(deploy_path(), "releases")


def shared_path():
    return posixpath.join(deploy_path(), "shared")


def repo_path():
    return posixpath.join(deploy_path(), "repo")


def current_path():
    return posixpath.join(deploy_path(), "current")


def release_path(name=None):
    return posixpath.join(releases_path(), name or env.release_name)


def _lock_path():
    return posixpath.join(deploy_path(), LOCK_FILE)


# -- settings, checked before any connection ---------------------------------
def linked_paths():
    """linked_dirs then linked_files, each checked to stay inside the release."""
    out = []
    for key in ("linked_dirs", "linked_files"):
        value = cenv.get(key) or []
        if isinstance(value, str):
            value = [value]
        for path in value:
            norm = posixpath.normpath(str(path))
            if not path or norm.startswith("/") or norm.split("/")[0] == ".." or norm == ".":
                raise ConfigError(f"env.{key} entry {path!r} must be a relative path inside the release")
            out.append((key, norm))
    paths = [p for _, p in out]
    for path in paths:
        for other in paths:
            if other != path and path.startswith(other + "/"):
                raise ConfigError(f"linked path {path!r} is inside linked path {other!r}: it is shared "
                                  f"already, and linking both would delete it from shared/")
        if paths.count(path) > 1:
            raise ConfigError(f"linked path {path!r} is listed twice")
    return out


_PER_FLOW = ("fake_published", "fake_finished", "previous_current", "fake_release_created", "fake_revision", "fake_ref",
             "release_name", "release_path", "previous_release", "rolled_back_from")


def _check_settings():
    # Runs per host at the start of each flow: forget the previous flow's values.
    scope = current_scope()
    if scope is not None:
        for key in _PER_FLOW:
            scope.values.pop(key, None)
    deploy_path()
    keep = cenv.get("keep_releases")
    try:
        if int(keep) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"env.keep_releases must be a whole number >= 1, got {keep!r}") from None
    linked_paths()


def _check_deploy_settings():
    _check_settings()
    scm = strategy(cenv.get("scm"))
    scm.validate(cenv.get("repo_url"), cenv.get("branch"))


registry.preflight("deploy", _check_deploy_settings)
registry.preflight("rollback", _check_settings)


# -- pure decisions -----------------------------------------------------------
def releases_to_remove(names, keep, live):
    """Oldest releases beyond ``keep``; never the live one or a non-release name."""
    ordered = sorted(n for n in names if RELEASE_NAME.match(n))
    doomed = ordered[: max(0, len(ordered) - int(keep))]
    return [n for n in doomed if n != live]


def rollback_target(names, live, requested=None, bad=()):
    """The release to roll back to, or ValueError saying why there is none.

    Releases marked bad (failed their health check) are never chosen.
    """
    ordered = sorted(n for n in names if RELEASE_NAME.match(n))
    if live is None:
        raise ValueError("no live release: current is missing")
    if requested:
        if requested not in ordered:
            raise ValueError(f"release {requested} not found; releases: {', '.join(ordered) or 'none'}")
        if requested == live:
            raise ValueError(f"release {requested} is already live")
        if requested in bad:
            raise ValueError(f"release {requested} is marked bad (it failed its health check)")
        return requested
    earlier = [n for n in ordered if n < live and n not in bad]
    if not earlier:
        raise ValueError("no earlier release to roll back to")
    return earlier[-1]


def next_release_name(now, existing):
    """UTC stamp, later than every release on every host (clocks and fast deploys)."""
    name = now.strftime(STAMP)
    known = sorted(n for n in existing if RELEASE_NAME.match(n))
    if known and name <= known[-1]:
        try:
            latest = datetime.datetime.strptime(known[-1], STAMP)
        except ValueError:
            raise ConfigError(f"release {known[-1]} sorts after now but is not a date: "
                              f"move it out of releases/ before deploying") from None
        name = (latest + datetime.timedelta(seconds=1)).strftime(STAMP)
    return name


# -- inspecting a host: one read-only command ---------------------------------
class HostState:
    """What the probe saw on one host."""

    def __init__(self):
        self.now = None
        self.current = None
        self.releases = {}
        self.bad = set()
        self.lock = None
        self.locked_by_us = False
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
        for line in text.splitlines():
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
    deploys racing for it cannot both win.
    """
    d = quote(deploy_path())
    lines = [
        "problems=0",
        'echo "now $(date +%s)"',
        f"if [ -L {d}/current ]; then echo \"current $(readlink {d}/current)\"; fi",
        f"for r in {d}/releases/*; do",
        '  [ -d "$r" ] || continue',
        '  rev=$(cat "$r/REVISION" 2>/dev/null || true)',
        f'  if [ -e "$r/{BAD_MARKER}" ]; then bad=bad; else bad=; fi',
        '  echo "release ${r##*/} ${rev:--} $bad"',
        "done",
        f"if [ -f {d}/{LOCK_FILE} ]; then echo \"lock $(head -c 2000 {d}/{LOCK_FILE} | tr '\\n' ' ')\"; problems=1; fi",
        f"if [ -d {d}/repo ]; then echo mirror; fi",
    ]
    if with_log:
        lines.append(f"if [ -f {d}/revisions.log ]; then tail -n 500 {d}/revisions.log | sed 's/^/log /'; fi")
    if scm is not None:
        for _, path in linked_paths():
            if path in [p for k, p in linked_paths() if k == "linked_files"]:
                target = quote(posixpath.join(shared_path(), path))
                lines.append(f"if [ ! -e {target} ]; then echo missing {quote(path)}; problems=1; fi")
        lines.append(scm.probe(cenv.get("repo_url"), cenv.get("branch"), repo_path=repo_path()))
    if lock_info is not None:
        info = quote(json.dumps(lock_info, sort_keys=True))
        lines += [
            'if [ "$problems" -eq 0 ]; then',
            f"  mkdir -p {d}",
            f"  if (set -C; printf '%s\\n' {info} > {d}/{LOCK_FILE}) 2>/dev/null; then echo locked;",
            f"  else echo \"lock $(cat {d}/{LOCK_FILE} 2>/dev/null | tr '\\n' ' ')\"; fi",
            "fi",
        ]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _here():
    scope = current_scope()
    return require_target(scope, "a deploy step"), scope.host


def _timeout(key="command_timeout"):
    return number(key, cenv.get(key), 0.001)


def _remote(command, label):
    """One of Fake's own commands: hidden, never warn-only, errors name the step."""
    conn, host = _here()
    return run_command(conn, command, host=host, hide=True, warn=False, label=label, timeout=_timeout())


def inspect(lock_info=None, scm=None, with_log=False):
    result = _remote(probe_script(lock_info, scm, with_log), "inspect " + deploy_path())
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


def _unlock_hint():
    roles = env.get("effective_roles") or []
    where = f"-R {','.join(roles)}" if roles else f"-H {env.host_string}"
    return f"fab {where} unlock"


def _user():
    return env.get("local_user") or getpass.getuser()


def _run():
    run = active_run()
    if run is None:
        raise ConfigError("deploy tasks must run inside a fab invocation or execute()")
    return run


def _facts():
    return _run().collect("fake_state").get(env.host_string) or HostState()


# -- stage work ------------------------------------------------------------
def _task(name, doc, **options):
    def decorate(fn):
        fn.__doc__ = doc
        return registry.add(Task(fn, name=name, **options))

    return decorate


@_task("deploy:check", "Read each host's state in one command, take the deploy lock, check the repository.")
def _check():
    run = _run()
    action = env.get("fake_action", "deploy")
    token = run.once("lock_token", lambda: uuid.uuid4().hex)
    lock_info = {
        "token": token, "user": _user(), "from": socket.gethostname(),
        "pid": os.getpid(), "since": run.once("lock_since", lambda: int(datetime.datetime.now().timestamp())),
        "task": action,
    }
    scm = strategy(cenv.get("scm")) if action == "deploy" else None
    prepared = scm.prepare_once(cenv.get("repo_url"), cenv.get("branch")) if scm is not None else None
    state = inspect(lock_info, scm)
    run.record("fake_state", env.host_string, state)
    if state.lock and not state.locked_by_us:
        raise HostError(env.host_string,
                        f"{deploy_path()} is locked by {describe_lock(state.lock, state.now)}; "
                        f"if no deploy is running there, remove the lock with: {_unlock_hint()}")
    for path in state.missing:
        raise HostError(env.host_string,
                        f"linked file {posixpath.join(shared_path(), path)} is missing: "
                        f"create it on the host before deploying")
    if scm is not None:
        sha, ref, error = scm.resolve(state.scm_lines, cenv.get("branch"), prepared)
        if error:
            raise HostError(env.host_string, f"{error} (repo_url {cenv.get('repo_url')})")
        run.record("fake_revision", env.host_string, (sha, ref))
    if not state.locked_by_us:
        raise HostError(env.host_string, "could not take the deploy lock")


def _where():
    roles = env.get("effective_roles") or []
    return ",".join(roles) if roles else ",".join(_run().hosts)


@_task("deploy:banner", "Say what this deploy is: repository, branch, commit, hosts, release name.")
def _banner():
    if env.get("fake_action") != "deploy":
        return
    run = _run()
    sha, ref = _revision()
    what = strategy(cenv.get("scm")).describe(ref, cenv.get("branch"))  # 'Branch main', 'Tag v1.4.0'
    branch = what[len("Branch "):] if what.startswith("Branch ") else what[:1].lower() + what[1:]
    run.once("banner", lambda: console().banner(
        f"deploying {' '.join(str(v) for v in (cenv.get('repo_url'), branch) if v)} ({sha[:14] if sha.startswith('sha256:') else sha[:7]}) to {_where()}: "
        f"{len(run.hosts)} host(s) as release {_release_name()}"))


def _release_name():
    run = _run()

    def pick():
        names = set()
        for state in run.collect("fake_state").values():
            names.update(state.releases)
        return next_release_name(datetime.datetime.now(datetime.timezone.utc), names)

    return run.once("release_name", pick)


def _revision():
    run = _run()

    def agree():
        seen = run.collect("fake_revision")
        shas = {sha for sha, _ in seen.values()}
        if len(shas) > 1:
            detail = ", ".join(f"{h}: {sha[:12]}" for h, (sha, _) in sorted(seen.items()))
            raise ConfigError(f"hosts see different commits for branch {cenv.get('branch')!r} ({detail}); deploy again")
        return next(iter(seen.values()))

    return run.once("revision", agree)


@_task("deploy:update", "Update the mirror, export the commit into a new release, link shared paths.")
def _update():
    state = _facts()
    name = _release_name()
    sha, ref = _revision()
    release = release_path(name)
    env.update(release_name=name, release_path=release, fake_release_created=name,
               fake_revision=sha, fake_ref=ref, previous_release=state.live, previous_current=state.current)
    _run().annotate(env.host_string, release=name, commit=sha)
    links = linked_paths()
    shared_dirs = [posixpath.join(shared_path(), p) for k, p in links if k == "linked_dirs"]
    shared_dirs += [posixpath.join(shared_path(), posixpath.dirname(p))
                    for k, p in links if k == "linked_files" and posixpath.dirname(p)]
    script = Script()
    script.argv("create directories", "mkdir", "-p", releases_path(), shared_path(), *shared_dirs)
    scm = strategy(cenv.get("scm"))
    conn, host = _here()
    scm.create_release(script, cenv.get("repo_url"), repo_path(), release, sha, state.mirror,
                       prepared=scm.prepare_once(cenv.get("repo_url"), cenv.get("branch")),
                       target=Target(conn, host, deploy_path(), name))
    revision = scm.revision(Resolved(sha, ref, None))
    script.add("write REVISION", f"printf '%s\\n' {quote(revision)} > {quote(posixpath.join(release, 'REVISION'))}")
    for _, path in links:
        inside = posixpath.join(release, path)
        parents = path.split("/")[:-1]
        for i in range(len(parents)):
            # A symlink in the release above a linked path would make rm -rf
            # below reach outside the release (into shared/, or anywhere).
            parent = posixpath.join(release, *parents[: i + 1])
            script.argv(f"link {path}: {'/'.join(parents[: i + 1])} is not a symlink", "test", "!", "-L", parent)
        script.argv(f"link {path}: clear", "rm", "-rf", "--", inside)
        script.argv(f"link {path}: parent", "mkdir", "-p", posixpath.dirname(inside))
        script.argv(f"link {path}", "ln", "-s", posixpath.join(shared_path(), path), inside)
    with scm.limit():
        _remote(script.render(), "deploy:update")


def _switch_steps(script, name=None, target=None):
    """current -> releases/<name> (or the link text ``target``) atomically.

    A new link renamed over the old one: ``ln -sfn`` would unlink and then
    create, leaving a moment with no current.
    """
    target = target or posixpath.join("releases", name)
    tmp = posixpath.join(deploy_path(), ".current.fake.tmp")
    script.argv("remove stale temp link", "rm", "-f", tmp)
    script.argv("ln -s", "ln", "-s", target, tmp)
    script.argv("mv -T", "mv", "-T", tmp, current_path())


@_task("deploy:symlink", "Switch current to the release: a new symlink renamed over the old one.")
def _symlink():
    name = env.release_name
    script = Script()
    script.argv("release exists", "test", "-d", release_path(name))
    _switch_steps(script, name)
    _remote(script.render(), "switch current")
    env.fake_published = True


@_task("deploy:finish", "Append to revisions.log and remove releases beyond keep_releases.")
def _finish():
    state = _facts()
    name, sha, ref = env.release_name, env.fake_revision, env.fake_ref or ""
    what = strategy(cenv.get("scm")).describe(ref, cenv.get("branch"))
    line = f"{what} (at {sha}) deployed as release {name} by {_user()}"
    lives = {st.live for st in _run().collect("fake_state").values()} | {name}
    doomed = [n for n in releases_to_remove(set(state.releases) | {name}, cenv.get("keep_releases"), name)
              if n not in lives]
    env.fake_finished = True  # from here on a failure leaves the new release live
    script = Script()
    script.add("log revision", f"printf '%s\\n' {quote(line)} >> {quote(posixpath.join(deploy_path(), 'revisions.log'))}")
    if doomed:
        script.argv("remove old releases", "rm", "-rf", "--", *[release_path(n) for n in doomed])
    _remote(script.render(), "deploy:finish")
    env.removed_releases = doomed


def rollback_plan(states, requested=None):
    """Per host: its target release or the reason it has none; plus disagreements.

    A fleet rolls back only when every host has the same live release and
    the same target; anything else is listed so a person can decide.
    """
    targets, problems = {}, []
    for host, st in states.items():
        try:
            targets[host] = rollback_target(st.releases, st.live, requested, st.bad)
        except ValueError as e:
            targets[host] = e
    lives = {host: st.live for host, st in states.items()}
    if len(set(lives.values())) > 1:
        problems.append("hosts have different live releases: "
                        + ", ".join(f"{h} {v or 'none'}" for h, v in lives.items()))
    picked = {h: t for h, t in targets.items() if isinstance(t, str)}
    if len(set(picked.values())) > 1 or (picked and len(picked) < len(targets)):
        problems.append("hosts would roll back to different releases: "
                        + ", ".join(f"{h} {t}" for h, t in targets.items()))
    return targets, problems


@_task("deploy:revert", "Choose the release to roll back to: the one before the live one, or --release.")
def _revert():
    state = _facts()
    run = _run()
    targets, problems = run.once("rollback_plan", lambda: rollback_plan(
        run.collect("fake_state"), env.get("rollback_to")))
    target = targets.get(env.host_string)
    if problems and not env.get("rollback_force"):
        raise HostError(env.host_string, "refusing to roll back: " + "; ".join(problems)
                        + "; make them agree, or pass --force to roll back each host on its own")
    if isinstance(target, Exception) or target is None:
        raise HostError(env.host_string, f"cannot roll back: {target}")
    env.update(release_name=target, release_path=release_path(target), rolled_back_from=state.live,
               previous_current=state.current)
    run.annotate(env.host_string, release=target, commit=state.releases.get(target))
    run.once("banner", lambda: console().banner(
        f"rolling back {_where()}: {len(run.hosts)} host(s) from release {state.live} to {target}"))


@_task("deploy:archive_rolled_back", "Archive the release rolled back from, remove it, log the rollback.")
def _archive_rolled_back():
    old, target = env.rolled_back_from, env.release_name
    d = deploy_path()
    script = Script()
    if old and old > target:
        archive = posixpath.join(d, f"rolled-back-release-{old}.tar.gz")
        # gzip -1: most of the saving at a fraction of the CPU (release trees are
        # often already-compressed assets); tar -I keeps tar's own exit status.
        script.argv("archive rolled-back release", "tar", "-I", "gzip -1", "-cf", archive, "-C", releases_path(), old)
        script.argv("remove rolled-back release", "rm", "-rf", "--", release_path(old))
    line = f"{_user()} rolled back to release {target}"
    script.add("log rollback", f"printf '%s\\n' {quote(line)} >> {quote(posixpath.join(d, 'revisions.log'))}")
    _remote(script.render(), "finishing rollback")


@_task("deploy:failed", "After a failure: remove an unpublished release, or switch a published one back.")
def _failed():
    name = env.get("fake_release_created")
    previous = env.get("previous_current")
    if not env.get("fake_published"):
        if not name:
            return
        _remove_unpublished(name, previous)
        return
    stage = _run().shared.get("stage")
    if stage in ("publishing", "published") or (stage == "finishing" and not env.get("fake_finished")):
        _switch_back(env.release_name, previous, mark_bad=env.get("fake_action") != "rollback")


def _remove_unpublished(name, previous):
    """Remove this run's release; first undo a switch whose result never came back.

    The command's last test fails if current still points at the release,
    so a host that could not be put back is reported, not silently kept.
    """
    cur, rel = quote(current_path()), quote(posixpath.join("releases", name))
    back = Script()
    if previous:
        _switch_steps(back, target=previous)
    else:
        back.argv("remove current", "rm", "-f", current_path())
    undo = " && ".join(shell for _, shell in back.steps)
    leftovers = strategy(cenv.get("scm")).leftovers(deploy_path(), name)
    script = "\n".join([
        f"cur=$(readlink {cur} 2>/dev/null || true)",
        f"if [ \"$cur\" = {rel} ]; then {undo}; fi",
        f"cur=$(readlink {cur} 2>/dev/null || true)",
        f"if [ \"$cur\" != {rel} ]; then {join(['rm', '-rf', '--', release_path(name), *leftovers])}; fi",
        f"test \"$(readlink {cur} 2>/dev/null || true)\" != {rel}",
    ]) + "\n"
    _remote(script, f"remove unpublished release {name}")


def _switch_back(name, previous, mark_bad=True):
    """Put current back to the link it had (``previous``), mark a deployed release bad, log it."""
    d = deploy_path()
    script = Script()
    if previous:
        _switch_steps(script, target=previous)
    else:
        script.argv("remove current", "rm", "-f", current_path())
    if mark_bad:
        script.argv("mark release bad", "touch", posixpath.join(release_path(name), BAD_MARKER))
    what = "deploy" if mark_bad else "rollback"
    shown = _link_name(previous) or "nothing"
    line = f"Release {name} was switched back to {shown} after a failed {what} by {_user()}"
    script.add("log revert", f"printf '%s\\n' {quote(line)} >> {quote(posixpath.join(d, 'revisions.log'))}")
    _remote(script.render(), "switch back")
    env.fake_published = False
    _run().note(env.host_string, f"switched back to {_link_name(previous) or 'no release'}"
                + (f" ({name} marked bad)" if mark_bad else ""))


def _link_name(target):
    """A release name for ``releases/<name>``, else the link text as it was."""
    if not target:
        return None
    base = posixpath.basename(target.rstrip("/"))
    return base if RELEASE_NAME.match(base) else target


@_task("deploy:healthcheck", "Run env.healthcheck on each host once live; a failure switches all back.")
def _healthcheck():
    check = env.get("healthcheck")
    if not check or env.get("fake_action") != "deploy":
        return
    if isinstance(check, str):
        conn, host = _here()
        result = run_command(conn, f"cd {quote(current_path())} && {check}", host=host, hide=True, warn=True,
                             timeout=_timeout("healthcheck_timeout") or _timeout())
        if result.exited != 0:
            out = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
            raise HostError(host, f"health check {check!r} failed (exit {result.exited})" + (f": {out}" if out else ""))
        return
    outcome = check()
    if outcome is False:
        raise HostError(env.host_string, f"health check {getattr(check, '__name__', check)!r} returned False")


@_task("deploy:unlock_own", "Release the deploy lock this run took (and only that one).")
def _unlock_own():
    facts = _run().collect("fake_state").get(env.host_string)
    if facts is not None and facts.lock and not facts.locked_by_us:
        return  # another run's lock, seen by our probe: not ours to touch
    # Otherwise try even without a record: a probe can write the lock and
    # then fail; the token check keeps any other run's lock safe.
    token = _run().once("lock_token", lambda: None)
    if token is None:
        return  # no probe ran in this flow, so no lock of ours can exist
    lock = quote(_lock_path())
    _remote(f"if [ -f {lock} ] && grep -qF -- {quote(token)} {lock}; then rm -f -- {lock}; fi\n",
            "release lock")


after("starting", "deploy:check")
after("starting", "deploy:banner")
after("updating", "deploy:update")
after("publishing", "deploy:symlink")
after("finishing", "deploy:finish")
after("reverting", "deploy:revert")
after("finishing_rollback", "deploy:archive_rolled_back")
before("finishing", "deploy:healthcheck")  # after every published hook (restart there)
after("failed", "deploy:failed")
after("ended", "deploy:unlock_own")


# -- tasks for people -----------------------------------------------------------
@registry.task
def unlock():
    """Remove the deploy lock, whoever holds it (after a crashed deploy)."""
    _check_settings()
    lock = quote(_lock_path())
    result = _remote(f'if [ -f {lock} ]; then echo "now $(date +%s)"; cat {lock}; rm -f -- {lock}; fi\n', "unlock")
    lines = result.stdout.splitlines()
    if not lines:
        print(f"[{env.host_string}] no lock at {_lock_path()}")
        return None
    now = int(lines[0].split()[1]) if lines[0].startswith("now ") else None
    holder = describe_lock(" ".join(lines[1:]), now)
    print(f"[{env.host_string}] removed lock held by {holder}")
    return holder


LOG_LINE = re.compile(r"^Branch (?P<branch>\S+) \(at (?P<sha>\w+)\) deployed as release (?P<name>\d{14}) by (?P<user>\S+)")


def release_rows(state):
    """Rows of (release, date, commit, branch, by, marks) for one host, oldest first."""
    deployed = {}
    for line in state.log:
        m = LOG_LINE.match(line)
        if m:
            deployed[m["name"]] = (m["branch"], m["user"])
    ordered = sorted(n for n in state.releases if RELEASE_NAME.match(n))
    live = state.live
    previous = [n for n in ordered if live and n < live and n not in state.bad]
    rows = []
    for name in ordered:
        marks = []
        if name == live:
            marks.append("live")
        if previous and name == previous[-1]:
            marks.append("previous")
        if name in state.bad:
            marks.append("bad")
        stamp = datetime.datetime.strptime(name, STAMP).strftime("%Y-%m-%d %H:%M:%S")
        branch, user = deployed.get(name, ("?", "?"))
        rows.append((name, stamp, (state.releases[name] or "?")[:12], branch, user, ",".join(marks)))
    return rows


@registry.task(readonly=True)
def releases():
    """List each host's releases: date, commit, branch, who; marks live, previous and bad."""
    _check_settings()
    state = inspect(with_log=True)
    _run().record("fake_releases", env.host_string, state)
    return {"live": state.live, "releases": dict(state.releases), "bad": sorted(state.bad)}


@_task("releases:table", "Print the releases of every host as one table, flagging hosts that disagree.",
       readonly=True)
def _releases_table():
    run = _run()

    def show():
        states = run.collect("fake_releases")
        for host in run.hosts:
            if host not in states:
                continue
            rows = release_rows(states[host])
            if not rows:
                console().host_lines(host, [f"no releases in {releases_path()}"])
                continue
            header = ("release", "date (UTC)", "commit", "branch", "by", "")
            widths = [max(len(r[i]) for r in rows + [header]) for i in range(6)]
            lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + rows]
            console().host_lines(host, lines)
        lives = {h: st.live for h, st in states.items()}
        if len(set(lives.values())) > 1:
            detail = ", ".join(f"{h} {v or 'none'}" for h, v in lives.items())
            console().write(f"warning: hosts disagree on the live release: {detail}", err=True, level=QUIET)

    run.once("releases_table", show)


after("releases", "releases:table")


# -- dry run -----------------------------------------------------------------------
def _plan_probe():
    scm = strategy(cenv.get("scm")) if env.get("fake_action") == "deploy" else None
    return inspect(None, scm)


def _in_scope(host, fn):
    from ..env import host_scope

    with host_scope(_run().scope(host)):
        return fn()


def _plan_deploy(states):
    names = set()
    for st in states.values():
        names.update(st.releases)
    name = next_release_name(datetime.datetime.now(datetime.timezone.utc), names)
    lives = {st.live for st in states.values()}
    return {host: _in_scope(host, lambda: _plan_deploy_host(st, name, lives)) for host, st in states.items()}


def _plan_deploy_host(st, name, lives):
    lines, stops = [], []
    scm = strategy(cenv.get("scm"))
    sha, ref, error = scm.resolve(st.scm_lines, cenv.get("branch"))
    if error:
        stops.append(f"{error} (repo_url {cenv.get('repo_url')})")
    else:
        lines.append(f"would create release {name} from {ref} at {sha[:12]}")
    lines.append(f"current: {st.current or 'none'}")
    links = [p for _, p in linked_paths()]
    lines.append("linked: " + (", ".join(links) if links else "nothing"))
    for path in st.missing:
        stops.append(f"linked file {posixpath.join(shared_path(), path)} is missing")
    if st.lock:
        stops.append(f"{deploy_path()} is locked by {describe_lock(st.lock, st.now)}")
    doomed = [n for n in releases_to_remove(set(st.releases) | {name}, cenv.get("keep_releases"), name)
              if n not in lives]
    lines.append("cleanup would remove: " + (", ".join(doomed) if doomed else "nothing"))
    lines += [f"would stop: {reason}" for reason in stops]
    return lines


def _plan_rollback(states):
    targets, problems = rollback_plan(states, env.get("rollback_to"))
    out = {}
    for host, st in states.items():
        target = targets[host]
        if isinstance(target, str):
            lines = [f"would roll back from {st.live} to {target}",
                     f"would archive and remove release {st.live}"]
        else:
            lines = [f"would stop: cannot roll back: {target}"]
        if st.lock:
            lines.append(f"would stop: {deploy_path()} is locked by {describe_lock(st.lock, st.now)}")
        lines += [f"would stop: {p}" for p in problems if not env.get("rollback_force")]
        out[host] = lines
    return out


registry.planner("deploy", _plan_probe, _plan_deploy)
registry.planner("rollback", _plan_probe, _plan_rollback)
