"""The end of a run, for people and for machines: the summary table and the JSON report."""

import json
import time

from ..exceptions import Interrupted
from ..output import console

__all__ = ["summary_table", "next_step", "write_report"]


def outcome_text(outcome):
    return "not reached" if outcome is None else "ok" if outcome == "ok" else "failed"


def summary_table(report):
    """host, outcome, release, commit, time: one row per host (grouped by outcome at scale)."""
    if console().compact:
        return grouped_summary(report)
    rows = [("host", "outcome", "release", "commit", "time")]
    for host in report.hosts:
        outcome = report.outcome.get(host)
        text = outcome_text(outcome).replace("failed", "FAILED")
        info = report.info.get(host, {})
        seconds = sum(report.timings.get(host, {}).values())
        rows.append((host, text, info.get("release") or "-", (info.get("commit") or "-")[:12], f"{seconds:.2f}s"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for host in report.hosts:
        for note in report.notes.get(host, []):
            lines.append(f"{host}: {note}")
    return "\n".join(lines)


def grouped_summary(report):
    """One row per outcome, release and commit, with how many hosts and their times.

    At 200 hosts a row per host hides the three that differ; the JSON
    report (``--report``) keeps every host's row.
    """
    groups = {}
    for host in report.hosts:
        outcome = outcome_text(report.outcome.get(host)).replace("failed", "FAILED")
        info = report.info.get(host, {})
        key = (outcome, info.get("release") or "-", (info.get("commit") or "-")[:12])
        groups.setdefault(key, []).append(host)
    rows = [("outcome", "hosts", "release", "commit", "time (median, max)")]
    named = []
    for (outcome, release, commit), hosts in sorted(groups.items(), key=lambda kv: (kv[0][0] != "ok", kv[0])):
        times = sorted(sum(report.timings.get(h, {}).values()) for h in hosts)
        rows.append((outcome, str(len(hosts)), release, commit, f"{times[len(times) // 2]:.2f}s, {times[-1]:.2f}s"))
        if outcome != "ok":
            named.append(f"{outcome}: {', '.join(hosts)}")
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines += named
    notes = {}
    for host in report.hosts:
        for note in report.notes.get(host, []):
            notes.setdefault(note, []).append(host)
    lines += [f"{', '.join(hosts)}: {note}" for note, hosts in notes.items()]
    return "\n".join(lines)


def next_step(report, error):
    """The command worth running next, when there is an obvious one."""
    roles = report.selected_roles
    where = f"-R {','.join(roles)}" if roles else f"-H {','.join(report.hosts)}"
    text = str(error)
    if "a run that is gone" in text:
        return ""  # the error already names the command that takes the lock over, for this flow
    if "is locked by" in text:
        return f"\nnext: if no deploy is running, fab {where} unlock"
    if report.degraded and not isinstance(error, Interrupted):
        return (f"\nnext: fix {', '.join(report.degraded)}, then fab {where} deploy again "
                f"(fab {where} releases shows each host)")
    if isinstance(error, Interrupted) and not report.notes:
        return f"\nnext: fab {where} releases  (check what each host has live)"
    if any("switched back" in n for notes in report.notes.values() for n in notes):
        return f"\nnext: fix the cause, then fab {where} deploy again; fab {where} releases shows each host"
    return ""


def write_report(path, report, error, argv):
    hosts = {}
    for host in report.hosts:
        outcome, info = report.outcome.get(host), report.info.get(host, {})
        hosts[host] = {
            "outcome": outcome_text(outcome),
            "error": None if outcome in (None, "ok") else console().mask(getattr(outcome, "reason", str(outcome))),
            "release": info.get("release"),
            "commit": info.get("commit"),
            "removed_releases": info.get("removed_releases", []),  # what keep_releases took away
            "notes": report.notes.get(host, []),
            "stages": {k: round(v, 3) for k, v in report.timings.get(host, {}).items()},
            # What recipes learnt (virtualenv key and whether it was built, gunicorn's master).
            "facts": {k: v for k, v in info.items() if k not in ("release", "commit", "removed_releases")},
        }
    report = {
        "command": [console().mask(a) for a in argv],
        "ok": error is None,
        "error": None if error is None else console().mask(str(error)),
        "exit": getattr(error, "exit_code", 1) if error is not None else 0,
        "failed_within_max_fail": dict(report.degraded),
        "dry_run": report.dry_run,
        "duration": round(time.monotonic() - report.started, 3),
        "hosts": hosts,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
