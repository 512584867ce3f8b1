"""The end of a run, for people and for machines: the summary table and the JSON report."""

import json
import time

from .exceptions import Interrupted
from .output import console

__all__ = ["summary_table", "next_step", "write_report"]


def outcome_text(outcome):
    return "not reached" if outcome is None else "ok" if outcome == "ok" else "failed"


def summary_table(run):
    """host, outcome, release, commit, time: one row per host."""
    rows = [("host", "outcome", "release", "commit", "time")]
    for host in run.hosts:
        outcome = run.outcome.get(host)
        text = outcome_text(outcome).replace("failed", "FAILED")
        info = run.info.get(host, {})
        seconds = sum(run.timings.get(host, {}).values())
        rows.append((host, text, info.get("release") or "-", (info.get("commit") or "-")[:12], f"{seconds:.2f}s"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for host in run.hosts:
        for note in run.notes.get(host, []):
            lines.append(f"{host}: {note}")
    return "\n".join(lines)


def next_step(run, error):
    """The command worth running next, when there is an obvious one."""
    roles = run.selected_roles
    where = f"-R {','.join(roles)}" if roles else f"-H {','.join(run.hosts)}"
    text = str(error)
    if "is locked by" in text:
        return f"\nnext: if no deploy is running, fab {where} unlock"
    if isinstance(error, Interrupted) and not run.notes:
        return f"\nnext: fab {where} releases  (check what each host has live)"
    if any("switched back" in n for notes in run.notes.values() for n in notes):
        return f"\nnext: fix the cause, then fab {where} deploy again; fab {where} releases shows each host"
    return ""


def write_report(path, run, error, argv):
    hosts = {}
    for host in run.hosts:
        outcome = run.outcome.get(host)
        hosts[host] = {
            "outcome": outcome_text(outcome),
            "error": None if outcome in (None, "ok") else console().mask(getattr(outcome, "reason", str(outcome))),
            "release": run.info.get(host, {}).get("release"),
            "commit": run.info.get(host, {}).get("commit"),
            "notes": run.notes.get(host, []),
            "stages": {k: round(v, 3) for k, v in run.timings.get(host, {}).items()},
        }
    report = {
        "command": [console().mask(a) for a in argv],
        "ok": error is None,
        "error": None if error is None else console().mask(str(error)),
        "dry_run": run.dry_run,
        "duration": round(time.monotonic() - run.started, 3),
        "hosts": hosts,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
