"""``--dry-run`` for deploy and rollback: read each host once, say what would happen.

The probe is the deploy's own read-only inspection without the lock; the
plan uses the same decisions the real run makes (decide.py), so the preview
and the deploy cannot disagree.
"""

import datetime
import posixpath

from ..scm import strategy
from ..state import registry
from .commands import current_run
from .decide import cleanup_plan, next_release_name, rollback_plan
from .layout import cenv, deploy_path, linked_paths, shared_path
from .lock import describe_lock
from .probe import inspect
from .progress import action

__all__ = []


def _plan_probe():
    scm = strategy(cenv.get("scm")) if action() == "deploy" else None
    return inspect(None, scm)


def _in_scope(host, fn):
    run = current_run()
    with run.scopes.enter(host, run.flow().roles):
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
    if st.lock is not None:
        stops.append(f"{deploy_path()} is locked by {describe_lock(st.lock, st.now)}")
    doomed = cleanup_plan(st.releases, cenv.get("keep_releases"), name, lives)
    lines.append("cleanup would remove: " + (", ".join(doomed) if doomed else "nothing"))
    lines += [f"would stop: {reason}" for reason in stops]
    return lines


def _plan_rollback(states):
    wanted = current_run().flow().kwargs
    targets, problems = rollback_plan(states, wanted.get("release"))
    out = {}
    for host, st in states.items():
        target = targets[host]
        if isinstance(target, str):
            lines = [f"would roll back from {st.live} to {target}",
                     f"would archive and remove release {st.live}"]
        else:
            lines = [f"would stop: cannot roll back: {target}"]
        if st.lock is not None:
            lines.append(f"would stop: {deploy_path()} is locked by {describe_lock(st.lock, st.now)}")
        lines += [f"would stop: {p}" for p in problems if not wanted.get("force")]
        out[host] = lines
    return out


registry.planner("deploy", _plan_probe, _plan_deploy)
registry.planner("rollback", _plan_probe, _plan_rollback)
