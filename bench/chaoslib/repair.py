"""Putting the fleet back between rounds: after a killed controller, and after a round that broke it.

So that each violation belongs to one round (see the docstring of
bench/chaos.py). These act on the harness (``chaos``): they run fab, read
hosts and record what they did there.
"""

import re
import shlex

from . import Abort
from .fixture import APP, BAD_MARKER
from .hostview import good_releases

DEAD_WORDS = re.compile(r"no longer running|not running|is dead|has died|died|stale|crashed|was killed|is gone",
                        re.I)


def recover_from_sigkill(chaos, round_no, rdir):
    """After a killed controller: a deploy (to read what Fake says about the lock), then unlock."""
    pid, chaos.sigkill_pending = chaos.sigkill_pending, None
    locked = [n for n, h in chaos.hosts.items() if chaos.read(h).lock]
    if not locked:
        chaos.sigkill_reports.append({"round": round_no, "killed_pid": pid, "lock_left": False})
        return ["no lock left by the killed run"]
    run = chaos.fab("deploy", rdir, "recover-deploy")
    chaos.learn(run, round_no)
    lines = [l for l in run.stderr.splitlines() if "locked by" in l]
    pid_named = any(f"pid {pid}" in l for l in lines)
    dead_said = any(DEAD_WORDS.search(l) for l in lines) or bool(DEAD_WORDS.search(run.stderr))
    chaos.sigkill_reports.append({"round": round_no, "killed_pid": pid, "lock_left": True,
                                  "locked_hosts": locked, "exit": run.exit, "pid_named": pid_named,
                                  "dead_said": dead_said, "message": (lines or [run.stderr.strip()[:300]])[0]})
    unlock = chaos.fab("unlock", rdir, "recover-unlock")
    if unlock.exit != 0:
        raise Abort(f"round {round_no}: fab unlock failed after a SIGKILL:\n{unlock.stderr[-2000:]}")
    return [f"recovered from SIGKILL of pid {pid}: lock on {','.join(locked)}; the deploy's message"
            f" {'named' if pid_named else 'did not name'} the pid and "
            f"{'said' if dead_said else 'did not say'} it is dead"]


def can_roll_back(chaos):
    """Every host has a release older than its live one that is not marked bad."""
    for host in chaos.hosts.values():
        view = chaos.read(host)
        if not view.live or not any(n < view.live and not bad for n, (_, bad, _) in view.releases.items()):
            return False
    return True


def unsound(chaos, views):
    """What a repair fixes: hosts that disagree, a current that is not a complete logged release,
    or hosts whose releases a rollback may go back to differ (so every rollback would refuse)."""
    lives = {v.live for v in views.values()}
    return len(lives) > 1 or len({frozenset(good_releases(v)) for v in views.values()}) > 1 or any(
        v.live is None or v.live not in v.releases or v.releases[v.live][0] is None
        or v.releases[v.live][0] != chaos.release_commit.get(v.live) for v in views.values())


def even_out(chaos):
    """Same releases, same bad marks on every host: a release some host lacks goes, a bad mark spreads.

    Never the live release. Returns what it did, for the round's notes.
    """
    views = {n: chaos.read(h) for n, h in chaos.hosts.items()}
    common = set.intersection(*(set(v.releases) for v in views.values()))
    bad = {r for v in views.values() for r, (_, b, _) in v.releases.items() if b}
    done = []
    for name, view in views.items():
        doomed = [r for r in view.releases if r not in common and r != view.live]
        marks = [r for r in view.releases if r in bad and not view.releases[r][1] and r != view.live]
        script = [f"rm -rf -- {APP}/releases/{r}" for r in doomed]
        script += [f"touch {APP}/releases/{r}/{BAD_MARKER}" for r in marks]
        if script:
            chaos.hosts[name].sh(" && ".join(script))
            done.append(f"{name}: " + " ".join([f"-{r}" for r in doomed] + [f"bad:{r}" for r in marks]))
    return done


def repair(chaos, round_no, rdir, found, after):
    """Put the fleet back to sound, so each violation belongs to one round: unlock, remove leftovers, redeploy.

    Also after a round that split the fleet and said so (no violation):
    the next round's rollback would only refuse.
    """
    chaos.repairs += 1
    notes = ["repaired"]
    if any(v.lock is not None for v in after.values()):
        run = chaos.fab("unlock", rdir, "repair-unlock")
        if run.exit != 0:
            raise Abort(f"round {round_no}: fab unlock failed while repairing:\n{run.stderr[-2000:]}")
        for name, host in chaos.hosts.items():
            if chaos.read(host).lock is not None:
                raise Abort(f"round {round_no}: fab unlock left {name}'s deploy.lock in place")
    for name, view in after.items():
        doomed = [f"{APP}/releases/{h}" for h in view.hidden]
        doomed += [f"{APP}/{e}" for e in view.entries
                   if e == ".current.fake.tmp" or e.startswith((".fake-upload-", ".fake-checkout-", ".fake-archive"))]
        for v in found:
            m = re.match(r"half-made release (\d{14})", v.text)
            if v.host == name and m and m.group(1) != view.live:
                doomed.append(f"{APP}/releases/{m.group(1)}")
        if doomed:
            chaos.hosts[name].sh("rm -rf -- " + " ".join(shlex.quote(d) for d in doomed))
    views = {n: chaos.read(h) for n, h in chaos.hosts.items()}
    broken = [n for n, v in views.items() if v.live is None or v.live not in v.releases
              or v.releases[v.live][0] is None or v.releases[v.live][0] != chaos.release_commit.get(v.live)]
    split = len({v.live for v in views.values()}) > 1
    if broken or split:
        notes.append(f"current broken on {','.join(broken)}" if broken else
                     "hosts disagree: " + " ".join(f"{n}={v.live}" for n, v in views.items()))
        for attempt in range(2):
            run = chaos.fab("deploy", rdir, f"repair-deploy{attempt}")
            chaos.learn(run, round_no)
            if run.exit == 0:
                notes.append("redeployed")
                break
            chaos.fab("unlock", rdir, f"repair-unlock{attempt}")
        else:
            raise Abort(f"round {round_no}: the fleet could not be repaired:\n{run.stderr[-2000:]}")
    evened = even_out(chaos)
    if evened:
        notes.append("releases evened out (" + "; ".join(evened) + ")")
    return notes
