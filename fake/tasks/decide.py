"""Pure decisions of a deploy: what to remove, what to roll back to, what to call a release.

No host is touched here: the probe's results go in, names come out, so the
rules that keep releases safe can be read and tested on their own.
"""

import datetime
import re

from ..exceptions import ConfigError
from ..scm.base import in_sentence
from .layout import RELEASE_NAME, STAMP

__all__ = ["releases_to_remove", "cleanup_plan", "rollback_target", "rollback_plan", "next_release_name",
           "release_rows", "LOG_LINE"]


def releases_to_remove(names, keep, live):
    """Oldest releases beyond ``keep``; never the live one or a non-release name."""
    ordered = sorted(n for n in names if RELEASE_NAME.match(n))
    doomed = ordered[: max(0, len(ordered) - int(keep))]
    return [n for n in doomed if n != live]


def cleanup_plan(releases, keep, new, lives):
    """What a deploy's clean-up removes: releases beyond ``keep`` and half-made ones.

    ``releases`` maps each existing name to its REVISION (None when it has
    none: a run killed while exporting left it); ``new`` is this deploy's
    release; nothing live on any host of the run (``lives``) is removed.
    """
    doomed = [n for n in releases_to_remove(set(releases) | {new}, keep, new) if n not in lives]
    return doomed + [n for n, rev in releases.items()
                     if rev is None and RELEASE_NAME.match(n) and n not in lives and n != new and n not in doomed]


def rollback_target(names, live, requested=None, bad=()):
    """The release to roll back to, or ValueError saying why there is none.

    Releases marked bad (failed their health check) are never chosen.
    """
    ordered = sorted(n for n in names if RELEASE_NAME.match(n))
    if live is None:
        raise ValueError("no live release: current is missing")
    if requested:
        if requested not in ordered:
            raise ValueError(f"release {requested} not found; releases: {', '.join(ordered) or 'none'}")
        if requested == live:
            raise ValueError(f"release {requested} is already live")
        if requested in bad:
            raise ValueError(f"release {requested} is marked bad (it failed its health check)")
        return requested
    earlier = [n for n in ordered if n < live and n not in bad]
    if not earlier:
        raise ValueError("no earlier release to roll back to")
    return earlier[-1]


def next_release_name(now, existing):
    """UTC stamp, later than every release on every host (clocks and fast deploys)."""
    name = now.strftime(STAMP)
    known = sorted(n for n in existing if RELEASE_NAME.match(n))
    if known and name <= known[-1]:
        try:
            latest = datetime.datetime.strptime(known[-1], STAMP)
        except ValueError:
            raise ConfigError(f"release {known[-1]} sorts after now but is not a date: "
                              f"move it out of releases/ before deploying") from None
        name = (latest + datetime.timedelta(seconds=1)).strftime(STAMP)
    return name


def rollback_plan(states, requested=None):
    """Per host: its target release or the reason it has none; plus disagreements.

    A fleet rolls back only when every host has the same live release and
    the same target; anything else is listed so a person can decide.
    """
    targets, problems = {}, []
    for host, st in states.items():
        try:
            targets[host] = rollback_target(st.releases, st.live, requested, st.bad)
        except ValueError as e:
            targets[host] = e
    lives = {host: st.live for host, st in states.items()}
    if len(set(lives.values())) > 1:
        problems.append("hosts have different live releases: "
                        + ", ".join(f"{h} {v or 'none'}" for h, v in lives.items()))
    picked = {h: t for h, t in targets.items() if isinstance(t, str)}
    if len(set(picked.values())) > 1 or (picked and len(picked) < len(targets)):
        problems.append("hosts would roll back to different releases: "
                        + ", ".join(f"{h} {t}" for h, t in targets.items()))
    return targets, problems


LOG_LINE = re.compile(r"^(?P<what>.+?) \(at (?P<sha>\S+)\) deployed as release (?P<name>\d{14}) by (?P<user>\S+)")


def release_rows(state):
    """Rows of (release, date, commit, branch, by, marks) for one host, oldest first."""
    deployed = {}
    for line in state.log:
        m = LOG_LINE.match(line)
        if m:
            deployed[m["name"]] = (in_sentence(m["what"]), m["user"])  # "main", "tag v1.4", "commit 1a2b3c4"
    ordered = sorted(n for n in state.releases if RELEASE_NAME.match(n))
    live = state.live
    previous = [n for n in ordered if live and n < live and n not in state.bad]
    rows = []
    for name in ordered:
        marks = []
        if name == live:
            marks.append("live")
        if previous and name == previous[-1]:
            marks.append("previous")
        if name in state.bad:
            marks.append("bad")
        try:
            stamp = datetime.datetime.strptime(name, STAMP).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:  # fourteen digits that are not a date
            stamp = "?"
        branch, user = deployed.get(name, ("?", "?"))
        rows.append((name, stamp, (state.releases[name] or "?")[:12], branch, user, ",".join(marks)))
    return rows
