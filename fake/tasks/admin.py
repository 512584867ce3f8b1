"""Tasks for people: ``unlock`` a stale lock, list ``releases`` on every host."""

import threading
from dataclasses import dataclass, field

from ..output import QUIET, console
from ..shell import quote
from ..state import env, registry
from .commands import current_run, send, stage_task
from .decide import release_rows
from .layout import check_settings, lock_path, releases_path
from .lock import describe_lock
from .probe import inspect

__all__ = ["unlock", "releases"]


@dataclass
class _Listing:
    """What ``releases`` read on each host, for the one table ``releases:table`` prints after it."""

    states: dict = field(default_factory=dict)
    printed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@registry.task
def unlock():
    """Remove the deploy lock, whoever holds it (after a crashed deploy)."""
    check_settings()
    lock = quote(lock_path())
    result = send(f'if [ -f {lock} ]; then echo "now $(date +%s)"; cat {lock}; rm -f -- {lock}; fi\n', "unlock")
    lines = result.stdout.splitlines()
    if not lines:
        print(f"[{env.host_string}] no lock at {lock_path()}")
        return None
    now = int(lines[0].split()[1]) if lines[0].startswith("now ") else None
    holder = describe_lock(" ".join(lines[1:]), now)
    print(f"[{env.host_string}] removed lock held by {holder}")
    return holder


@registry.task(readonly=True)
def releases():
    """List each host's releases: date, commit, branch, who; marks live, previous and bad."""
    check_settings()
    state = inspect(with_log=True)
    listing = current_run().flow().shared(_Listing)
    with listing.lock:
        listing.states[env.host_string] = state
    return {"live": state.live, "releases": dict(state.releases), "bad": sorted(state.bad)}


@stage_task("releases:table", "Print the releases of every host as one table, flagging hosts that disagree.",
            readonly=True)
def _releases_table():
    run = current_run()
    listing = run.flow().shared(_Listing)
    with listing.lock:
        if listing.printed:
            return
        listing.printed = True
        states = dict(listing.states)
    for host in run.hosts:
        if host not in states:
            continue
        rows = release_rows(states[host])
        if not rows:
            console().host_lines(host, [f"no releases in {releases_path()}"])
            continue
        header = ("release", "date (UTC)", "commit", "branch", "by", "")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(6)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + rows]
        console().host_lines(host, lines)
    lives = {h: st.live for h, st in states.items()}
    if len(set(lives.values())) > 1:
        detail = ", ".join(f"{h} {v or 'none'}" for h, v in lives.items())
        console().write(f"warning: hosts disagree on the live release: {detail}", err=True, level=QUIET)


registry.after("releases", "releases:table")
