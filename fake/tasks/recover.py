"""After a failed deploy or rollback: put every reached host back as it was.

``deploy:failed`` runs in the flow's ``failed`` stage on each host the run
reached. Before publishing it removes the release this run made (undoing a
switch whose result never came back); once published, it switches
``current`` back to the exact link it had and, after a deploy, marks the
release bad, so rollback never picks it. Once ``deploy:finish`` has begun
on any host the release stays live on every host: the clean-up finishes
the hosts it did not reach.
"""

import posixpath

from ..scm import strategy
from ..shell import Script, join, quote
from ..state import env, registry
from .commands import current_run, fence_shell, log_line, restore_steps, stage_task, temp_link_path, user
from .layout import BAD_MARKER, RELEASE_NAME, cenv, current_path, deploy_path, release_path
from .deploy import finish_here
from .lock import send_last
from .progress import action, deploy_state, probed, shared

__all__ = []


@stage_task("deploy:failed", "After a failure: remove an unpublished release, or switch a published one back.")
def _failed():
    st = deploy_state()
    if not st.published:
        if st.created:
            _remove_unpublished(st.created, st.previous_current, st.switch_sent,
                                fence_release=st.update_sent and not st.update_done)
        elif action() == "rollback" and st.release and not st.skip:
            _undo_lost_switch(st.release, st.previous_current, st.switch_sent)
        _note_if_hosts_disagree(st)
        flow = current_run().flow()
        if flow.rollout is not None and flow.rollout.active and st.created:  # dropped, or never went live
            current_run().note(env.host_string, f"stays on {_link_name(st.previous_current) or 'no release'}"
                               f" ({st.created} removed)")
        return
    stage = current_run().flow().stage
    if stage in ("publishing", "published") or (stage == "finishing" and not shared().finished):
        _switch_back(st.release, st.previous_current, mark_bad=action() != "rollback")
    elif stage == "finishing" and not st.finished:
        # deploy:finish began elsewhere (then the run stopped: Ctrl-C, say):
        # the release is live there for good, so it stays live here too.
        finish_here()
        current_run().note(env.host_string, f"release {st.release} stays live: deploy:finish, interrupted "
                           "on the fleet, was done here in the clean-up")


def _note_if_hosts_disagree(st):
    """Stopped before anything changed (a lock, say): if the hosts are on different releases
    (a run that died halfway through its switch), say which host has which."""
    seen = probed()
    if st.created or st.probed is None or len({s.current for s in seen.values()}) < 2:
        return
    current_run().note(env.host_string, f"live release {st.probed.live or st.probed.current or 'none'} "
                       "(the hosts are on different releases; a deploy brings them to one)")


def _undo_if_switched(name, previous, fence):
    """Shell: if current points at releases/<name> (a switch whose result never
    came back), put it back to ``previous``. Plain shell, no ``set -e``: the
    caller's last test says whether it worked.

    When the switch was sent, a fence goes up first (:func:`fence_shell`):
    the switch, if still in flight (past its timeout, say), can then never
    land after the check below; one that landed before is seen by it. The
    way back uses a temp link of its own, beside the fence.
    """
    cur, rel = quote(current_path()), quote(posixpath.join("releases", name))
    back = Script()
    restore_steps(back, previous, temp=temp_link_path(".current.fake.back"))
    undo = " && ".join(shell for _, shell in back.steps)
    return [fence_shell() if fence else ":", f"cur=$(readlink {cur} 2>/dev/null || true)",
            f"if [ \"$cur\" = {rel} ]; then {undo}; fi"]


def _not_current(name):
    return f"test \"$(readlink {quote(current_path())} 2>/dev/null || true)\" != {quote(posixpath.join('releases', name))}"


def _remove_unpublished(name, previous, fence, fence_release=False):
    """Remove this run's release; first undo a switch whose result never came back.

    The last test fails if current still points at the release or the
    release is still there, so such a host is reported, not silently kept.
    When the update's own result never came back, it may still be running
    (stopped, past its timeout): then an empty release marked bad stays in
    its place, so whatever it writes late lands in a release no rollback
    picks; the next deploy removes it (it has no REVISION).
    """
    leftovers = strategy(cenv.get("scm")).leftovers(deploy_path(), name)
    release = quote(release_path(name))
    remove = join(["rm", "-rf", "--", release_path(name), *leftovers])
    if fence_release:
        bad = quote(posixpath.join(release_path(name), BAD_MARKER))
        remove += f"; mkdir -p -- {release} && : > {bad}"
        kept = f"test -e {bad}"
    else:
        kept = f"test ! -e {release}"
    send_last(_undo_if_switched(name, previous, fence) + [
        f"if {_not_current(name)}; then {remove}; fi",
        f"{_not_current(name)} && {kept}",
    ], f"remove unpublished release {name}")


def _undo_lost_switch(target, previous, fence):
    """A rollback's switch may have landed though its result was lost: undo it."""
    send_last(_undo_if_switched(target, previous, fence) + [_not_current(target)],
              f"check current after the failed rollback to {target}")


def _switch_back(name, previous, mark_bad=True):
    """Put current back to the link it had (``previous``), mark a deployed release bad, log it."""
    script = Script()
    restore_steps(script, previous)
    if mark_bad:
        script.argv("mark release bad", "touch", posixpath.join(release_path(name), BAD_MARKER))
    what = "deploy" if mark_bad else "rollback"
    shown = _link_name(previous) or "nothing"
    line = f"Release {name} was switched back to {shown} after a failed {what} by {user()}"
    log_line(script, "log revert", line)
    send_last(script, "switch back")
    deploy_state().published = False
    current_run().note(env.host_string, f"switched back to {_link_name(previous) or 'no release'}"
                       + (f" ({name} marked bad)" if mark_bad else ""))


def _link_name(target):
    """A release name for ``releases/<name>``, else the link text as it was."""
    if not target:
        return None
    base = posixpath.basename(target.rstrip("/"))
    return base if RELEASE_NAME.match(base) else target


registry.after("failed", "deploy:failed")
