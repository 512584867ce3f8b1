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
(starting), then one batched command per stage that changes something; the
last of them also releases the lock when nothing of the fabfile runs after
it. Everything else is decided locally.

The pieces: ``layout`` (paths and settings), ``probe`` (the one read),
``commands`` (Fake's own commands), ``lock``, ``decide`` (pure choices),
this module (the stage tasks),
``recover`` (after a failure), ``admin`` (unlock, releases) and ``plan``
(--dry-run).
"""

import datetime
import os
import posixpath
import socket
import uuid

from ..env import current_scope
from ..exceptions import ConfigError, HostError
from ..output import console
from ..remote import run_command
from ..shell import Script, mkdir_if_missing, quote, remove_if_present
from ..scm import strategy
from ..scm.base import FETCH_DONE, HOUSEKEEPING_FAILED, Resolved, Target
from ..state import env, registry
from .decide import next_release_name, releases_to_remove, rollback_plan
from .framework import (  # noqa: F401  (re-exported for fabfiles)
    deploy, ended, failed, finished, finishing, finishing_rollback, published,
    publishing, reverted, reverting, rollback, started, starting, updated, updating,
)
from .commands import Gate, current_run, here, log_line, send, stage_task, switch_steps, timeout, user, where
from .layout import (  # noqa: F401  (paths are part of the fabfile API)
    BAD_MARKER, RELEASE_NAME, cenv, check_settings, current_path, deploy_path, linked_paths,
    lock_path, release_path, releases_path, repo_path, shared_path,
)
from .lock import describe_lock, unlock_hint, unlock_if_last, unlock_shell
from .probe import facts, inspect

__all__ = [
    "env", "before", "after", "deploy", "rollback", "unlock", "releases",
    "starting", "started", "updating", "updated", "publishing", "published",
    "finishing", "finished", "reverting", "reverted", "finishing_rollback", "failed", "ended",
    "deploy_path", "releases_path", "shared_path", "repo_path", "current_path", "release_path",
]

before = registry.before
after = registry.after
env.setdefaults(
    branch=None,
    keep_releases=5,
    linked_dirs=[],
    linked_files=[],
    scm="git",
)

_PER_FLOW = ("fake_published", "fake_finished", "fake_skip", "previous_current", "fake_release_created", "fake_revision", "fake_ref",
             "release_name", "release_path", "previous_release", "rolled_back_from", "fake_unlocked")


def _start_flow():
    """Per host, before any connection and again as each flow starts.

    Checks the settings, and forgets the previous flow's values so that
    ``fab deploy deploy`` starts the second deploy clean.
    """
    scope = current_scope()
    if scope is not None:
        for key in _PER_FLOW:
            scope.values.pop(key, None)
    check_settings()


def _start_deploy():
    _start_flow()
    strategy(cenv.get("scm")).validate(cenv.get("repo_url"), cenv.get("branch"))


registry.preflight("deploy", _start_deploy)
registry.preflight("rollback", _start_flow)


# -- stage work ------------------------------------------------------------
@stage_task("deploy:check", "Read each host's state in one command, take the deploy lock, check the repository.")
def _check():
    run = current_run()
    action = env.get("fake_action", "deploy")
    token = run.once("lock_token", lambda: uuid.uuid4().hex)
    # "since" is added by the host's own clock, so its age is read on one clock.
    lock_info = {"token": token, "user": user(), "from": socket.gethostname(), "pid": os.getpid(), "task": action}
    scm = strategy(cenv.get("scm")) if action == "deploy" else None
    prepared = scm.prepare_once(cenv.get("repo_url"), cenv.get("branch")) if scm is not None else None
    state = inspect(lock_info, scm)
    run.record("fake_state", env.host_string, state)
    if state.lock_failed:
        raise HostError(env.host_string, f"cannot create the lock file {lock_path()}: "
                        f"is {deploy_path()} writable by the login user?")
    if state.lock is not None and not state.locked_by_us:
        raise HostError(env.host_string,
                        f"{deploy_path()} is locked by {describe_lock(state.lock, state.now)}; "
                        f"if no deploy is running there, remove the lock with: {unlock_hint()}")
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


@stage_task("deploy:banner", "Say what this deploy is: repository, branch, commit, hosts, release name.")
def _banner():
    if env.get("fake_action") != "deploy":
        return
    run = current_run()
    sha, ref = _revision()
    what = strategy(cenv.get("scm")).describe(ref, cenv.get("branch"))  # 'Branch main', 'Tag v1.4.0'
    branch = what[len("Branch "):] if what.startswith("Branch ") else what[:1].lower() + what[1:]
    run.once("banner", lambda: console().banner(
        f"deploying {' '.join(str(v) for v in (cenv.get('repo_url'), branch) if v)} ({sha[:14] if sha.startswith('sha256:') else sha[:7]}) to {where()}: "
        f"{len(run.flow_hosts())} host(s) as release {_release_name()}"))


def _release_name():
    run = current_run()

    def pick():
        names = set()
        for state in run.collect("fake_state").values():
            names.update(state.releases)
        return next_release_name(datetime.datetime.now(datetime.timezone.utc), names)

    return run.once("release_name", pick)


def _revision():
    run = current_run()

    def agree():
        seen = run.collect("fake_revision")
        shas = {sha for sha, _ in seen.values()}
        if len(shas) > 1:
            detail = ", ".join(f"{h}: {sha[:12]}" for h, (sha, _) in sorted(seen.items()))
            raise ConfigError(f"hosts see different commits for branch {cenv.get('branch')!r} ({detail}); deploy again")
        return next(iter(seen.values()))

    return run.once("revision", agree)


@stage_task("deploy:update", "Update the mirror, export the commit into a new release, link shared paths.")
def _update():
    state = facts()
    name = _release_name()
    sha, ref = _revision()
    release = release_path(name)
    env.update(release_name=name, release_path=release, fake_release_created=name,
               fake_revision=sha, fake_ref=ref, previous_release=state.live, previous_current=state.current)
    current_run().annotate(env.host_string, release=name, commit=sha)
    links = linked_paths()
    shared_dirs = [posixpath.join(shared_path(), p) for k, p in links if k == "linked_dirs"]
    shared_dirs += [posixpath.join(shared_path(), posixpath.dirname(p))
                    for k, p in links if k == "linked_files" and posixpath.dirname(p)]
    script = Script()
    script.add("create directories", mkdir_if_missing(releases_path(), shared_path(), *shared_dirs))
    scm = strategy(cenv.get("scm"))
    conn, host = here()
    scm.create_release(script, cenv.get("repo_url"), repo_path(), release, sha, state.mirror,
                       prepared=scm.prepare_once(cenv.get("repo_url"), cenv.get("branch")),
                       target=Target(conn, host, deploy_path(), name))
    revision = scm.revision(Resolved(sha, ref, None))
    script.add("write REVISION", f"printf '%s\\n' {quote(revision)} > {quote(posixpath.join(release, 'REVISION'))}")
    _link_steps(script, release, [path for _, path in links])
    send(script.render(), "deploy:update", gate=Gate(scm.limit(), FETCH_DONE), stdin=script.stdin)


def _link_steps(script, release, paths):
    """Replace each linked path in the release with a symlink into shared/.

    Links that share a parent directory are made by one ``ln -s src...
    dir`` (POSIX: each link is named after its source, and shared/<path>
    ends in the same name as <path>), so a Rails-style list costs a few
    programs on the host, not one per path.
    """
    by_parent = {}
    for path in paths:
        parents = path.split("/")[:-1]
        for i in range(len(parents)):
            # A symlink in the release above a linked path would make rm -rf
            # below reach outside the release (into shared/, or anywhere).
            parent = posixpath.join(release, *parents[: i + 1])
            script.argv(f"link {path}: {'/'.join(parents[: i + 1])} is not a symlink", "test", "!", "-L", parent)
        script.add(f"link {path}: clear", remove_if_present(posixpath.join(release, path), recursive=True))
        by_parent.setdefault(posixpath.dirname(posixpath.join(release, path)), []).append(path)
    nested = [d for d in by_parent if d != release]
    if nested:
        script.add("link: parent directories", mkdir_if_missing(*nested))
    for directory, group in by_parent.items():
        sources = [posixpath.join(shared_path(), p) for p in group]
        script.argv(f"link {', '.join(group)}", "ln", "-s", "--", *sources, directory)


@stage_task("deploy:symlink", "Switch current to the release: a new symlink renamed over the old one.")
def _symlink():
    if env.get("fake_skip"):
        return
    name = env.release_name
    script = Script()
    script.argv("release exists", "test", "-d", release_path(name))
    switch_steps(script, name)
    send(script.render(), "switch current")
    env.fake_published = True


@stage_task("deploy:finish", "Append to revisions.log, remove old releases, git gc --auto; release the lock if nothing follows.")
def _finish():
    state = facts()
    name, sha, ref = env.release_name, env.fake_revision, env.fake_ref or ""
    scm = strategy(cenv.get("scm"))
    line = f"{scm.describe(ref, cenv.get('branch'))} (at {sha}) deployed as release {name} by {user()}"
    lives = {st.live for st in current_run().collect("fake_state").values()} | {name}
    doomed = [n for n in releases_to_remove(set(state.releases) | {name}, cenv.get("keep_releases"), name)
              if n not in lives]
    env.fake_finished = True  # from here on a failure leaves the new release live
    script = Script()
    log_line(script, "log revision", line)
    if doomed:
        script.argv("remove old releases", "rm", "-rf", "--", *[release_path(n) for n in doomed])
    scm.housekeeping(script, repo_path())
    unlocks = unlock_if_last(script)
    result = send(script.render(), "deploy:finish")
    env.removed_releases = doomed
    env.fake_unlocked = unlocks
    if HOUSEKEEPING_FAILED in result.stdout.splitlines():
        current_run().note(env.host_string, f"{scm.name} housekeeping in {repo_path()} failed (the deploy is done)")


@stage_task("deploy:revert", "Choose the release to roll back to: the one before the live one, or --release.")
def _revert():
    state = facts()
    run = current_run()
    targets, problems = run.once("rollback_plan", lambda: rollback_plan(
        run.collect("fake_state"), env.get("rollback_to")))
    target = targets.get(env.host_string)
    if problems and not env.get("rollback_force"):
        raise HostError(env.host_string, "refusing to roll back: " + "; ".join(problems)
                        + "; make them agree, or pass --force to roll back each host on its own")
    if isinstance(target, Exception) or target is None:
        someone = any(isinstance(t, str) for t in targets.values())
        if env.get("rollback_force") and len(targets) > 1 and someone:
            # --force: each host on its own; one without a target stays as it is.
            env.fake_skip = True
            run.note(env.host_string, f"not rolled back: {target}")
            return
        raise HostError(env.host_string, f"cannot roll back: {target}")
    env.update(release_name=target, release_path=release_path(target), rolled_back_from=state.live,
               previous_current=state.current)
    run.annotate(env.host_string, release=target, commit=state.releases.get(target))
    run.once("banner", lambda: console().banner(
        f"rolling back {where()}: {len(run.flow_hosts())} host(s) from release {state.live} to {target}"))


@stage_task("deploy:archive_rolled_back", "Archive the release rolled back from, remove it, log the rollback.")
def _archive_rolled_back():
    if env.get("fake_skip"):
        return
    old, target = env.rolled_back_from, env.release_name
    d = deploy_path()
    script = Script()
    if old and old > target:
        tarball = posixpath.join(d, f"rolled-back-release-{old}.tar")
        # Two steps, not `tar -z` or a pipe: gzip -1 is most of the saving at a
        # fraction of the CPU, any tar can do it, and each step's exit counts.
        script.argv("archive rolled-back release", "tar", "-cf", tarball, "-C", releases_path(), old)
        script.argv("compress archive", "gzip", "-1", "-f", tarball)
        script.argv("remove rolled-back release", "rm", "-rf", "--", release_path(old))
    line = f"{user()} rolled back to release {target}"
    log_line(script, "log rollback", line)
    unlocks = unlock_if_last(script)
    send(script.render(), "finishing rollback")
    env.fake_unlocked = unlocks


@stage_task("deploy:healthcheck", "Run env.healthcheck on each host once live; a failure switches all back.")
def _healthcheck():
    check = env.get("healthcheck")
    if not check or env.get("fake_action") != "deploy":
        return
    if isinstance(check, str):
        conn, host = here()
        result = run_command(conn, f"cd {quote(current_path())} && {check}", host=host, hide=True, warn=True,
                             timeout=timeout("healthcheck_timeout") or timeout())
        if result.exited != 0:
            out = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
            raise HostError(host, f"health check {check!r} failed (exit {result.exited})" + (f": {out}" if out else ""))
        return
    outcome = check()
    if outcome is False:
        raise HostError(env.host_string, f"health check {getattr(check, '__name__', check)!r} returned False")


@stage_task("deploy:unlock_own", "Release the deploy lock this run took (and only that one).")
def _unlock_own():
    facts = current_run().collect("fake_state").get(env.host_string)
    if facts is not None and facts.lock is not None and not facts.locked_by_us:
        return  # another run's lock, seen by our probe: not ours to touch
    # Otherwise try even without a record: a probe can write the lock and
    # then fail; the token check keeps any other run's lock safe.
    token = current_run().once("lock_token", lambda: None)
    if token is None:
        return  # no probe ran in this flow, so no lock of ours can exist
    if env.get("fake_unlocked"):
        return  # the flow's last command already removed it
    send(unlock_shell(token), "release lock")


after("starting", "deploy:check")
after("starting", "deploy:banner")
after("updating", "deploy:update")
after("publishing", "deploy:symlink")
after("finishing", "deploy:finish")
after("reverting", "deploy:revert")
after("finishing_rollback", "deploy:archive_rolled_back")
before("finishing", "deploy:healthcheck")  # after every published hook (restart there)
after("ended", "deploy:unlock_own")



# The failure handling, unlock, releases and the dry-run planners register themselves on import.
from . import plan, recover  # noqa: E402,F401
from .admin import releases, unlock  # noqa: E402
