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
``commands`` (Fake's own commands), ``lock``, ``progress`` (what a flow
knows, per host and shared), ``decide`` (pure choices), this module (the
deploy's stage tasks), ``healthcheck`` (``deploy:healthcheck``), ``revert``
(the rollback's), ``recover`` (after a failure), ``admin`` (unlock,
releases) and ``plan`` (--dry-run).
"""

import datetime
import os
import posixpath
import socket

from ..exceptions import ConfigError, HostBusy, HostCommandError, HostError
from ..shell import Script, mkdir_if_missing, quote, remove_if_present
from ..scm import strategy
from ..scm.base import FETCH_DONE, HOUSEKEEPING_FAILED, Resolved, Target
from ..scm.gitfetch import FETCHED
from ..state import env, registry
from .commands import Gate, current_run, here, log_line, send, stage_task, switch_steps, user
from .decide import cleanup_plan, next_release_name
from .framework import (  # noqa: F401  (re-exported for fabfiles)
    deploy, ended, failed, finished, finishing, finishing_rollback, published,
    publishing, reverted, reverting, rollback, started, starting, updated, updating,
)
from .layout import (  # noqa: F401  (paths are part of the fabfile API)
    BAD_MARKER, RELEASE_NAME, cenv, check_settings, current_path, deploy_path, linked_paths,
    lock_path, release_path, releases_path, repo_path, shared_path,
)
from .lock import describe_lock, owner_gone, send_last, take_lock_hint, take_over, unlock_hint, unlock_shell
from .probe import HostState, inspect
from .progress import action, banner, deploy_state, facts, fleet, probed, shared, show, states

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


def _start_deploy():
    check_settings()
    strategy(cenv.get("scm")).validate(cenv.get("repo_url"), cenv.get("branch"))


# Per host, before any connection and again as each flow starts.
registry.preflight("deploy", _start_deploy)
registry.preflight("rollback", check_settings)


# -- stage work ------------------------------------------------------------
@stage_task("deploy:check", "Read each host's state in one command, take the deploy lock, check the repository.")
def _check():
    what = action()
    st = deploy_state()
    show(deploy_action=what)
    # "since" is added by the host's own clock, so its age is read on one clock.
    lock_info = {"token": shared().token(), "user": user(), "from": socket.gethostname(), "pid": os.getpid(),
                 "task": what}
    scm = strategy(cenv.get("scm")) if what == "deploy" else None
    prepared = scm.prepare_once(cenv.get("repo_url"), cenv.get("branch")) if scm is not None else None
    late = scm is not None and scm.probe_locked(cenv.get("repo_url"), cenv.get("branch"), repo_path()) is not None
    # A probe that fetches holds a git_max_concurrent slot until its fetch is done.
    st.probed = seen = inspect(lock_info, scm, gate=Gate(scm.limit(), FETCH_DONE) if late else None)
    if seen.lock_failed:
        raise HostError(env.host_string, f"cannot create the lock file {lock_path()}: "
                        f"is {deploy_path()} writable by the login user, and its disk not full?")
    if seen.lock is not None and not seen.locked_by_us:
        _locked_elsewhere(seen, lock_info)
        if late and seen.locked_by_us:  # taken over just now: the probe could not fetch then
            fetch = "fake_locked=1\nproblems=0\n" + scm.probe_locked(cenv.get("repo_url"), cenv.get("branch"),
                                                                       repo_path()) + "\nexit 0\n"
            seen.scm_lines += HostState.parse(send(fetch, "git fetch", gate=Gate(scm.limit(), FETCH_DONE)).stdout).scm_lines
    for path in seen.missing:
        raise HostError(env.host_string,
                        f"linked file {posixpath.join(shared_path(), path)} is missing: "
                        f"create it on the host before deploying")
    if scm is not None:
        resolved = Resolved(*scm.resolve(seen.scm_lines, cenv.get("branch"), prepared))
        if resolved.error:
            raise HostError(env.host_string, f"{resolved.error} (repo_url {cenv.get('repo_url')})")
        st.resolved = resolved
    if not seen.locked_by_us:
        raise HostError(env.host_string, "could not take the deploy lock")


def _locked_elsewhere(seen, lock_info):
    """Another run's lock: wait for it (HostBusy), or take it over if that run is gone and we may."""
    holder, gone = describe_lock(seen.lock, seen.now), owner_gone(seen.lock)
    if gone and current_run().take_lock:
        seen.locked_by_us = True  # from here on deploy:unlock_own tries its token-checked release
        if not take_over(seen.lock, lock_info):
            seen.locked_by_us = False
            raise HostError(env.host_string, f"could not take over the lock of {holder}: it changed meanwhile")
        current_run().note(env.host_string, f"took over the lock of a run that is gone: {holder}")
        return
    if gone:
        raise HostError(env.host_string,
                        f"{deploy_path()} is locked by {holder}, a run that is gone ({gone}); "
                        f"take the lock over with: {take_lock_hint()}, or remove it with: {unlock_hint()}")
    raise HostBusy(env.host_string,
                   f"{deploy_path()} is locked by {holder}; if no deploy is running there, remove the lock "
                   f"with: {unlock_hint()} (or wait for it with --lock-wait SECONDS)")


@stage_task("deploy:banner", "Say what this deploy is: repository, branch, commit, hosts, release name.")
def _banner():
    if action() != "deploy":
        return
    what = strategy(cenv.get("scm")).headline(_revision(), cenv.get("branch"))  # 'main (1a2b3c4)'
    source = " ".join(str(v) for v in (cenv.get("repo_url"), what) if v)
    banner(f"deploying {source} to {fleet()} as release {_release_name()}")


def _release_name():
    def pick():
        names = set()
        for seen in probed().values():
            names.update(seen.releases)
        return next_release_name(datetime.datetime.now(datetime.timezone.utc), names)

    return shared().agree_release_name(pick)


def _revision():
    """The Resolved every host deploys; hosts that see different commits stop the deploy."""
    def agree():
        seen = {host: st.resolved for host, st in states().items() if st.resolved is not None}
        if len({r.revision for r in seen.values()}) > 1:
            detail = ", ".join(f"{h}: {r.revision[:12]}" for h, r in sorted(seen.items()))
            raise ConfigError(f"hosts see different commits for branch {cenv.get('branch')!r} ({detail}); deploy again")
        return next(iter(seen.values()))

    return shared().agree_revision(agree)


@stage_task("deploy:update", "Update the mirror, export the commit into a new release, link shared paths.")
def _update():
    st, seen = deploy_state(), facts()
    name = _release_name()
    resolved = _revision()
    release = release_path(name)
    st.release = st.created = name
    st.previous_current = seen.current
    show(release_name=name, release_path=release, previous_release=seen.live)
    current_run().annotate(env.host_string, release=name, commit=resolved.revision)
    links = linked_paths()
    shared_dirs = [posixpath.join(shared_path(), p) for k, p in links if k == "linked_dirs"]
    shared_dirs += [posixpath.join(shared_path(), posixpath.dirname(p))
                    for k, p in links if k == "linked_files" and posixpath.dirname(p)]
    script = Script()
    script.add("create directories", mkdir_if_missing(releases_path(), shared_path(), *shared_dirs))
    scm = strategy(cenv.get("scm"))
    conn, host = here()
    fetched = FETCHED in seen.scm_lines  # the probe fetched already (fake.scm.gitfetch)
    scm.create_release(script, cenv.get("repo_url"), repo_path(), release, resolved.revision, seen.mirror,
                       prepared=scm.prepare_once(cenv.get("repo_url"), cenv.get("branch")),
                       target=Target(conn, host, deploy_path(), name), fetched=fetched)
    revision = scm.revision(resolved)
    script.add("write REVISION", f"printf '%s\\n' {quote(revision)} > {quote(posixpath.join(release, 'REVISION'))}")
    _link_steps(script, release, [path for _, path in links])
    st.update_sent = True
    try:
        send(script.render(), "deploy:update", gate=None if fetched else Gate(scm.limit(), FETCH_DONE),
             stdin=script.stdin)
    except HostCommandError as e:
        st.update_done = isinstance(e.exited, int)  # it ended with a status; "-": it may still run
        raise
    st.update_done = True


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
    st = deploy_state()
    if st.skip:
        return
    script = Script()
    script.argv("release exists", "test", "-d", release_path(st.release))
    switch_steps(script, st.release)
    st.switch_sent = True
    send(script.render(), "switch current")
    st.published = True


@stage_task("deploy:finish", "Append to revisions.log, remove old releases, git gc --auto; release the lock if nothing follows.")
def _finish():
    finish_here()


def finish_here():
    """deploy:finish's work on this host; also the clean-up's on a host an interrupt kept from it."""
    st, seen = deploy_state(), facts()
    name, resolved = st.release, _revision()
    scm = strategy(cenv.get("scm"))
    line = f"{scm.describe(resolved.ref or '', cenv.get('branch'))} (at {resolved.revision}) deployed as release {name} by {user()}"
    lives = {other.live for other in probed().values()} | {name}
    doomed = cleanup_plan(seen.releases, cenv.get("keep_releases"), name, lives)
    # From here on a failure leaves the new release live, on every host.
    st.finished = shared().finished = True
    script = Script()
    log_line(script, "log revision", line)
    if doomed:
        script.argv("remove old releases", "rm", "-rf", "--", *[release_path(n) for n in doomed])
    scm.housekeeping(script, repo_path())
    result = send_last(script, "deploy:finish")
    st.removed_releases = doomed
    current_run().annotate(env.host_string, removed_releases=list(doomed))
    if HOUSEKEEPING_FAILED in result.stdout.splitlines():
        current_run().note(env.host_string, f"{scm.name} housekeeping in {repo_path()} failed (the deploy is done)")


@stage_task("deploy:unlock_own", "Release the deploy lock this run took (and only that one).")
def _unlock_own():
    st = deploy_state()
    if st.probed is not None and st.probed.lock is not None and not st.probed.locked_by_us:
        return  # another run's lock, seen by our probe: not ours to touch
    # Otherwise try even without a probe result: a probe can write the lock
    # and then fail; the token check keeps any other run's lock safe.
    token = shared().lock_token
    if token is None:
        return  # no probe ran in this flow, so no lock of ours can exist
    if st.unlocked:
        return  # the flow's last command already removed it
    send(unlock_shell(token), "release lock")


after("starting", "deploy:check")
after("starting", "deploy:banner")
after("updating", "deploy:update")
after("publishing", "deploy:symlink")
after("finishing", "deploy:finish")
after("reverting", "deploy:revert")
after("finishing_rollback", "deploy:archive_rolled_back")
from . import healthcheck  # noqa: E402,F401  (deploy:healthcheck, before finishing: here, in this order)
_unlock_own.on_retry = True  # a flow tried again after --lock-wait gives its locks back first
after("ended", "deploy:unlock_own")

# The rollback's steps, the failure handling, unlock, releases and the dry-run planners register themselves on import.
from . import plan, recover, revert  # noqa: E402,F401
from .admin import releases, unlock  # noqa: E402
