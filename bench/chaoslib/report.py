"""What a run leaves on record: each round's JSON line, the summary table, the --json file.

The formats are read by people and by tests/e2e/test_chaos.py (the JSON's
``aborted``, ``rounds``, ``faults_scheduled`` and ``violations``); keep them stable.
"""

import collections
import json
import statistics

from .invariants import INVARIANTS, violation_class
from .schedule import ACTIONS, FAULTS


def write_round(chaos, rdir, sched, runs, found, notes, effect):
    """One line of rounds.jsonl per round; the round's own round.json when it has violations (or --keep)."""
    record = {"round": sched.round, "seed": sched.seed, "action": sched.action,
              "fault": sched.fault.describe() if sched.fault else None, "took_effect": bool(effect),
              "runs": [{"label": r.label, "task": r.task, "argv": r.argv, "pid": r.pid, "exit": r.exit,
                        "seconds": round(r.duration, 3), "release": r.release(),
                        "signals": [int(s) for s in r.signals]} for r in runs],
              "violations": [v.__dict__ for v in found], "notes": notes}
    with open(chaos.work / "rounds.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if found or chaos.args.keep:
        (rdir / "round.json").write_text(json.dumps(record, indent=2) + "\n")


def summary(chaos, argv, wall, aborted=None):
    """The markdown summary: rounds, faults scheduled and effective, violations per invariant and class."""
    by_inv = collections.Counter(v.invariant for v in chaos.violations)
    rt = chaos.round_times
    lines = ["# Fake chaos run", "", "`" + " ".join(["python bench/chaos.py", *argv]) + "`", ""]
    lines += [f"- {chaos.rounds_done} rounds ({', '.join(f'{a} {chaos.actions[a]}' for a in ACTIONS)}),"
              f" {len(chaos.names)} hosts, seed {chaos.args.seed}, wall time {wall:.0f} s"
              + (f"; round time mean {statistics.mean(rt):.2f} s, median {statistics.median(rt):.2f} s,"
                 f" max {max(rt):.2f} s (the fab runs alone: median {statistics.median(chaos.fab_times):.2f} s)"
                 if rt else ""),
              f"- fleet repaired (unlock, leftovers removed, redeploy) after {chaos.repairs} round(s):"
              f" each with violations, or with hosts left on different releases", ""]
    if aborted:
        lines += [f"**Stopped early:** {aborted}", ""]
    lines += ["| fault | scheduled | took effect |", "|---|---:|---:|"]
    for kind in FAULTS:
        if kind in chaos.args.kinds:
            lines.append(f"| {kind}: {FAULTS[kind]} | {chaos.faults_scheduled[kind]} | {chaos.faults_effective[kind]} |")
    none = chaos.rounds_done - sum(chaos.faults_scheduled.values())
    lines += [f"| (no fault) | {none} | |", ""]
    lines += ["| invariant | violations |", "|---|---:|"]
    for inv in (1, 2, 3, 4, 5, 6, 0):
        lines.append(f"| {inv}. {INVARIANTS[inv]} | {by_inv[inv]} |")
    lines.append("")
    if chaos.sigkill_reports:
        left = [r for r in chaos.sigkill_reports if r["lock_left"]]
        lines += [f"After a SIGKILL of the controller ({len(chaos.sigkill_reports)} rounds later recovered):"
                  f" a lock was left {len(left)} time(s); the next deploy's message named the dead run's pid"
                  f" {sum(r['pid_named'] for r in left)} time(s) and said it is dead/stale"
                  f" {sum(r['dead_said'] for r in left)} time(s)."]
        if left:
            lines.append(f"  e.g. `{left[0]['message'].strip()[:200]}`")
        lines.append("")
    if chaos.odd:
        lines += ["Other findings (not counted as violations):", ""]
        lines += [f"- {o}" for o in chaos.odd[:50]]
        lines.append("")
    if chaos.violations:
        classes = {}
        for v in chaos.violations:
            classes.setdefault(violation_class(v), []).append(v)
        lines += ["| violation class | count | first seen (replay: --seed S --first-round R --rounds 1) |",
                  "|---|---:|---|"]
        for klass, seen in sorted(classes.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
            lines.append(f"| [{klass[0]}] {klass[1]} | {len(seen)} | seed {seen[0].seed} round {seen[0].round} |")
        lines += ["", "Violations:", ""]
        lines += [f"- {v.line()}" for v in chaos.violations]
        lines.append("")
    return "\n".join(lines)


def json_text(chaos, argv, wall, aborted):
    """The --json file: counts, every violation, the evidence of rounds with findings, every deploy."""
    return json.dumps({
        "argv": argv, "rounds": chaos.rounds_done, "wall_s": round(wall, 1), "aborted": aborted,
        "faults_scheduled": dict(chaos.faults_scheduled), "faults_effective": dict(chaos.faults_effective),
        "violations": [v.__dict__ for v in chaos.violations],
        "violations_by_invariant": {str(k): c for k, c in
                                    collections.Counter(v.invariant for v in chaos.violations).items()},
        "sigkill_reports": chaos.sigkill_reports, "other_findings": chaos.odd, "evidence": chaos.evidence,
        "deploys": [{"round": r, "run": label, "release": name, "commit": sha}
                    for r, label, name, sha in chaos.deploy_log], "round_times": [round(t, 3) for t in chaos.round_times],
    }, indent=2) + "\n"
