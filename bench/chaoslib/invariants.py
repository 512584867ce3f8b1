"""The checks after a round: the six invariants, the harness's own (0), and the other findings.

The definitions are the docstring of bench/chaos.py; each ``_inv*`` function
below is one of them, yielding ``(host, text)`` per breach. They only read:
the hosts' views before and after the round, the runs, and what the harness
recorded (``release_commit``, ``shared_base``, ``log_state``).
"""

import collections
import re
import signal
from dataclasses import dataclass

from .fixture import APP, HOOK_LOG
from .said import names_failed, names_with_release

INVARIANTS = {
    1: "current is a complete release with the logged commit",
    2: "hosts agree, or a failed run named each that differs",
    3: "shared/ files unchanged",
    4: "revisions.log only grows",
    5: "nothing half-made or left over (lock, temp link, upload)",
    6: "a failed run exits non-zero and names its failed hosts",
    0: "every run ends in time (harness)",
}
RELEASE = re.compile(r"^\d{14}$")


@dataclass
class Violation:
    invariant: int
    seed: int
    round: int
    host: str
    text: str

    def line(self):
        where = f"{self.host}: " if self.host else ""
        return f"seed {self.seed} round {self.round}: [{self.invariant}] {where}{self.text}"


def violation_class(v):
    """(invariant, the violation's text without hosts, releases, commits and lock contents)."""
    text = re.sub(r"deploy\.lock left: (?!\(empty\)).*", "deploy.lock left", v.text)
    text = re.sub(r"\b\d{14}\b", "<release>", text)
    text = re.sub(r"\bweb\d+\b", "<host>", text)
    text = re.sub(r"\b[0-9a-f]{12,40}\b", "<commit>", text)
    text = re.sub(r"(<host>, )+<host>", "<hosts>", text)
    text = re.sub(r"\(.*?@[^)]*\)", "(...)", text)
    return v.invariant, text


def check(sched, runs, before, after, effect, killed, *, release_commit, shared_base, log_state, names,
          run_limit):
    """Every violation of the round, in invariant order 0, 1, ..., 6."""
    checks = [
        (0, _inv0_in_time(runs, run_limit)),
        (1, _inv1_current(after, release_commit)),
        (2, _inv2_agree(runs, before, after, killed)),
        (3, _inv3_shared(after, shared_base)),
        (4, _inv4_log(after, log_state)),
        (5, _inv5_leftovers(before, after, release_commit) if not killed else ()),
        (6, _inv6_named(sched, runs, after, effect, killed, names)),
    ]
    return [Violation(inv, sched.seed, sched.round, host, text) for inv, found in checks for host, text in found]


def _inv0_in_time(runs, run_limit):
    for run in runs:
        if getattr(run, "hung", False):
            yield None, f"run {run.label} ({run.task}) still running after {run_limit:.0f} s: killed"


def _inv1_current(after, release_commit):
    """current is a complete release with the commit logged for it."""
    for name, view in after.items():
        if view.current_notlink:
            yield name, "current is not a symlink"
            continue
        if view.current is None:
            yield name, "no current"
            continue
        live = view.live
        if live is None or not RELEASE.match(live):
            yield name, f"current -> {view.current!r}, not releases/<release>"
            continue
        if live not in view.releases:
            yield name, f"current -> {view.current}, which does not exist (dangling)"
            continue
        rev, _, links = view.releases[live]
        want = release_commit.get(live)
        if rev is None:
            yield name, f"current -> {view.current}, which has no REVISION"
        elif want is None:
            yield name, f"current -> {view.current} (REVISION {rev[:12]}), a release no deploy logged"
        elif rev != want:
            yield name, f"current -> {view.current} has REVISION {rev[:12]}, its deploy logged {want[:12]}"
        if not links:
            yield name, f"current -> {view.current} lacks links into shared/"


def _inv2_agree(runs, before, after, killed):
    """Agreement, or the differing hosts named with what they have."""
    lives = {n: v.live or v.current for n, v in after.items()}
    changed = any(lives[n] != (before[n].live or before[n].current) for n in lives)
    if not (len(set(lives.values())) > 1 and changed and not killed):
        return
    # Where the hosts should be: on the release of the round's last run to succeed, else where
    # they all were before (a failed run changes nothing), else (they differed already) where
    # most are.
    old = {before[n].live or before[n].current for n in before}
    ok = sorted((r for r in runs if r.exit == 0), key=lambda r: r.ended)
    if ok and ok[-1].targets():
        ref = collections.Counter(ok[-1].targets().values()).most_common(1)[0][0]
    elif ok and ok[-1].release():
        ref = ok[-1].release()
    elif len(old) == 1:
        ref = old.pop()
    else:
        ref = collections.Counter(lives.values()).most_common(1)[0][0]
    failed = [r for r in runs if r.exit not in (0, None)]
    for name, live in lives.items():
        if live == ref:
            continue
        if not any(names_with_release(r.stderr, name, live) for r in failed):
            said = "no run failed" if not failed else "no failed run said so"
            others = ", ".join(n for n, l in lives.items() if l == ref) or "no host"
            yield name, f"left on {live} while {others} have {ref}; {said}"


def _inv3_shared(after, shared_base):
    for name, view in after.items():
        now = {p: d for p, d in view.shared.items() if p != HOOK_LOG}
        for path, digest in shared_base[name].items():
            if path not in now:
                yield name, f"shared/{path} is gone"
            elif now[path] != digest:
                yield name, f"shared/{path} changed (sha256 {now[path][:12]}, was {digest[:12]})"


def _inv4_log(after, log_state):
    for name, view in after.items():
        size, whole = log_state[name]
        if size and (view.log_size < size or view.log_head != whole):
            yield name, (f"revisions.log was rewritten: its first {size} bytes changed"
                         f" (now {view.log_size} bytes)")


def _inv5_leftovers(before, after, release_commit):
    """Nothing half-made or left over (not asked after a SIGKILLed controller: it cannot clean up)."""
    for name, view in after.items():
        prior = before[name]
        logged = " ".join(view.log_new)
        for rel in sorted(set(view.releases) - set(prior.releases)):
            rev, marked_bad, links = view.releases[rel]
            want = release_commit.get(rel)
            accounted = (rel == view.live or f"release {rel} " in logged + " "
                         or f"Release {rel} was switched back" in logged or marked_bad)
            if rev is None:
                yield name, f"half-made release {rel}: no REVISION"
            elif want is None:
                yield name, f"release {rel} (REVISION {rev[:12]}) from no deploy the harness saw"
            elif rev != want:
                yield name, f"release {rel} has REVISION {rev[:12]}, its deploy logged {want[:12]}"
            elif not accounted:
                yield name, (f"half-made release {rel}: not live, not logged, not marked bad"
                             f" (a failed deploy's release left behind)")
            elif not links:
                yield name, f"release {rel} lacks its links into shared/"
        for hidden in sorted(view.hidden - prior.hidden):
            yield name, f"releases/{hidden} left behind"
        allowed = {"repo", "releases", "shared", "current", "revisions.log"}
        for entry in sorted(view.entries - prior.entries - allowed):
            if entry == "deploy.lock" or (entry == ".current.fake.tmp" and view.fence):
                continue  # the lock is checked below; a fence stops a late switch (by design)
            if re.fullmatch(r"rolled-back-release-\d{14}\.tar\.gz", entry):
                continue
            what = ("temp link" if entry == ".current.fake.tmp" else
                    "upload temp file" if entry.startswith(".fake-upload-") else
                    "archive in the making" if entry.startswith(".fake-archive") else "unexpected entry")
            yield name, f"{what} {entry} left in {APP}"
        if view.lock is not None:
            yield name, f"deploy.lock left: {view.lock.strip()[:160] or '(empty)'}"


def _inv6_named(sched, runs, after, effect, killed, names):
    """Failed runs fail loudly, successful ones really succeeded."""
    def target(run, host):
        return run.targets().get(host) or (run.release() if run.task == "deploy" else None)

    def line(run, release):
        return (f"deployed as release {release} " if run.task == "deploy"
                else f"rolled back to release {release} ")

    logged = {n: " ".join(v.log_new) + " " for n, v in after.items()}
    # A host did a run's work if it is on that run's release and logged it (whatever the exit:
    # a signal can come after the last host finished).
    success = {n: any(target(r, n) and after[n].live == target(r, n) and line(r, target(r, n)) in logged[n]
                      for r in runs) for n in after}
    for run in (r for r in runs if r.exit == 0):
        for name, view in after.items():
            want = target(run, name)
            if want is None or line(run, want) not in logged[name]:
                yield name, (f"run {run.label} ({run.task}) exited 0 but {name}'s revisions.log"
                             f" has no '{line(run, want).strip()}'")
            elif view.live not in {target(r, name) for r in runs}:
                yield name, (f"run {run.label} ({run.task}) exited 0 but {name} is on {view.live},"
                             f" the release of no run of this round")
    # A host a fault reached that did not end up deployed: a failed run names it, unless that
    # run failed on another host first (then the fleet stopped for that one's reason).
    failed = [r for r in runs if r.exit not in (0, None)]
    for name in sorted(hosts_hit(sched, runs, effect, after)):
        if success[name] or killed or not failed:  # exit 0 with the host not deployed: see above
            continue
        if any(names_failed(r.stderr, name) for r in failed):
            continue
        if any(names_failed(r.stderr, other) for r in failed for other in names if other != name):
            continue
        yield name, (f"{sched.fault.describe()} hit {name}, which did not end deployed; the run"
                     f" exited {','.join(str(r.exit) for r in failed)} naming no failed host")


def hosts_hit(sched, runs, effect, after):
    """The hosts a fault of this round actually reached."""
    fault = sched.fault
    if not fault or not effect:
        return set()
    if fault.kind == "cut":
        return {c["name"] for c in effect}
    if fault.kind in ("sshd_kill", "disk_full", "slow", "hang", "hook_fail"):
        return {fault.host}
    return set()


def oddities(sched, runs):
    """Things worth a look that no invariant covers (listed, not counted as violations)."""
    out = []
    for run in runs:
        for sig in run.signals:
            # Death by the signal itself (exit -N) is what a shell shows as 128+N too.
            if sig != signal.SIGKILL and run.exit not in (0, 128 + sig, -sig):
                out.append(f"seed {sched.seed} round {sched.round}: run {run.label} got"
                           f" {signal.Signals(sig).name} and exited {run.exit}, not {128 + sig}"
                           + (" (and printed nothing)" if not run.stderr.strip() else ""))
        if "Traceback" in run.stderr:
            last = run.stderr.strip().splitlines()[-1][:160]
            out.append(f"seed {sched.seed} round {sched.round}: run {run.label} ({run.task}, "
                       f"signals {[signal.Signals(s).name for s in run.signals]}, exit {run.exit})"
                       f" printed a traceback: {last}")
        if not sched.fault and run.exit != 0 and sched.action != "pair":
            out.append(f"seed {sched.seed} round {sched.round}: run {run.label} ({run.task}) exited {run.exit}"
                       f" in a round without a fault: {(run.stderr.strip().splitlines() or [''])[0][:160]}")
        if run.exit not in (0, None) and run.exit > 0 and not run.signals and not run.stderr.strip():
            out.append(f"seed {sched.seed} round {sched.round}: run {run.label} exited {run.exit}"
                       f" with nothing on stderr")
    return out
