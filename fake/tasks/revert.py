"""The rollback's own steps: choose the release to go back to, then archive the one left.

The rest of a rollback is the deploy's: ``deploy:check`` reads and locks,
``deploy:symlink`` switches, ``deploy:failed`` puts a host back. The flow's
arguments (``--release``, ``--force``) are read from the flow itself.
"""

import posixpath

from ..exceptions import HostError
from ..shell import Script, join, quote
from ..state import env
from .commands import current_run, log_line, stage_task, user
from .decide import rollback_plan
from .layout import ARCHIVE_TEMP, deploy_path, release_path, releases_path
from .lock import send_last
from .progress import banner, deploy_state, facts, fleet, probed, shared, show

__all__ = []


@stage_task("deploy:revert", "Choose the release to roll back to: the one before the live one, or --release.")
def _revert():
    st, seen = deploy_state(), facts()
    run = current_run()
    wanted = run.flow().kwargs
    force = wanted.get("force")
    targets, problems = shared().agree_rollback_plan(lambda: rollback_plan(probed(), wanted.get("release")))
    target = targets.get(env.host_string)
    if problems and not force:
        raise HostError(env.host_string, "refusing to roll back: " + "; ".join(problems)
                        + "; make them agree, or pass --force to roll back each host on its own")
    if isinstance(target, Exception) or target is None:
        someone = any(isinstance(t, str) for t in targets.values())
        if force and len(targets) > 1 and someone:
            # --force: each host on its own; one without a target stays as it is.
            st.skip = True
            run.note(env.host_string, f"not rolled back: {target}")
            return
        raise HostError(env.host_string, f"cannot roll back: {target}")
    st.release, st.rolled_back_from, st.previous_current = target, seen.live, seen.current
    show(release_name=target, release_path=release_path(target), rolled_back_from=seen.live)
    run.annotate(env.host_string, release=target, commit=seen.releases.get(target))
    banner(f"rolling back {fleet()} from release {seen.live} to {target}")


@stage_task("deploy:archive_rolled_back", "Archive the release rolled back from, remove it, log the rollback.")
def _archive_rolled_back():
    st = deploy_state()
    if st.skip:
        return
    old, target = st.rolled_back_from, st.release
    script = Script()
    if old and old > target:
        tarball = posixpath.join(deploy_path(), f"rolled-back-release-{old}.tar.gz")
        temp = posixpath.join(deploy_path(), ARCHIVE_TEMP)
        # Two steps, not `tar -z` or a pipe: gzip -1 is most of the saving at a
        # fraction of the CPU, any tar can do it, and each step's exit counts.
        # Built under a temp name and renamed: a full disk or a dropped
        # connection never leaves half an archive under the real name.
        gone = f"{{ rm -f -- {quote(temp)} {quote(temp + '.gz')}; false; }}"
        script.add("archive rolled-back release",
                   f"{join(['tar', '-cf', temp, '-C', releases_path(), old])} || {gone}")
        script.add("compress archive", f"{join(['gzip', '-1', '-f', temp])} || {gone}")
        script.argv("keep archive", "mv", "-f", "--", temp + ".gz", tarball)
        script.argv("remove rolled-back release", "rm", "-rf", "--", release_path(old))
    log_line(script, "log rollback", f"{user()} rolled back to release {target}")
    send_last(script, "finishing rollback")
