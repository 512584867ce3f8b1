"""Chaos rounds for Fake: deploys and rollbacks under random faults, checked against invariants.

    sudo .venv/bin/python bench/chaos.py --rounds 100 --seed 1 [--hosts 4] [--keep]
                                         [--out FILE.md] [--json FILE.json]
                                         [--kinds cut,sigkill,...] [--first-round R]

Not part of the default test run (tests/e2e/test_chaos.py runs a short one).
One fleet of real sshd hosts (tests/e2e/sshd.py) sits behind a fault-injecting
TCP proxy (bench/faultproxy.py); a real git repository gets a new commit before
every deploy, and each deploy's release and commit are logged. The fabfile
links two files and two directories from ``shared/``, pre-filled with known
content. Each round has a schedule drawn from (seed, round) alone: a deploy,
a rollback, or two deploys started together, plus at most one fault (FAULTS).
A fault comes at a moment drawn over the run, or just after a stage line
("* updated") that fab prints. After the round every host is read through
``/proc/<sshd pid>/root`` (its own mount namespace; nothing runs on it) and
checked:

1. ``current`` is a complete release: ``releases/<name>`` with its links into
   shared/, whose REVISION is the commit logged for <name> when it was
   deployed (a dangling ``current`` fails here).
2. The hosts agree on the live release, or a run exited non-zero and its
   stderr said, for each host that differs, which release it has (see
   `names_with_release` in chaoslib/said.py: "host <release>" as in the
   rollback refusal, or "host ... switched back to / is on / is left on
   <release>"; not a summary-table row, nor an error line that merely
   contains the release).
   A host differs when it is not where the round should have left it: on
   the release of the round's last run to succeed, or else where all hosts
   were before the round. Only a disagreement this round made counts.
3. Every file in ``shared/`` is byte-identical (sha256) to before, except the
   one the chaos hook appends to.
4. ``revisions.log`` only grows: what it held before is a prefix of it now.
5. Nothing half-made or left over by this round: each release directory the
   round made has REVISION (the logged commit) and links, and is live, or
   logged in that host's revisions.log as deployed or switched back, or
   marked bad; no hidden entry in ``releases/`` (a failed export's flag), no
   ``.fake-upload-*`` or ``.fake-archive*``, no ``.current.fake.tmp`` link
   (a directory there is the fence a failed run leaves), nothing else new in
   deploy_path (e.g. a rolled-back release's ``.tar`` whose gzip failed), no
   ``deploy.lock``. Not checked after a SIGKILL of the controller: then the
   next round first runs a deploy, records whether its error names the dead
   run's lock (its pid) and says that run is dead, runs
   ``fab -R production unlock``, then plays its own schedule.
6. A run that exits 0 left every host logged, and the last one every host on
   its release; a host a fault reached that did not end up deployed is named
   as failed (``[host]``, or its summary row ``FAILED``) by a run that exited
   non-zero.

0. (the harness's own) every run ends within ``--run-limit`` seconds.

Tracebacks, and signals answered with another exit status than the documented
130/143, are listed as other findings, not counted.

Violations are printed with the seed and round that produced them. The same
seed gives the same schedule; timing, and so the outcome, may vary.
``--seed S --first-round R --rounds 1`` plays round R's schedule on a fresh
fleet. After a violation the harness repairs the fleet (unlock, remove what
was left, deploy again if ``current`` is broken or hosts disagree), so each
violation belongs to one round.

Needs root (sshd, mount namespaces, SIGSTOP of the hosts' processes), like the
end-to-end tests. Everything it starts (sshd hosts, fab runs, the proxy's
thread) is stopped by PID at exit, on Ctrl-C and SIGTERM too.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from chaoslib import Abort, log  # noqa: E402
from chaoslib.harness import Chaos  # noqa: E402
from chaoslib.report import json_text, summary  # noqa: E402
from chaoslib.schedule import FAULTS  # noqa: E402 - also read by tests/e2e/test_chaos.py


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Deploy and roll back under random faults; check invariants.")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--first-round", type=int, default=0, help="start at this round's schedule (to replay one)")
    parser.add_argument("--kinds", default=",".join(FAULTS),
                        help=f"fault kinds to draw from (default all: {','.join(FAULTS)})")
    parser.add_argument("--scm", choices=("git", "copy"), default="git")
    parser.add_argument("--command-timeout", type=float, default=3.0)
    parser.add_argument("--connect-timeout", type=float, default=3.0)
    parser.add_argument("--fab-set", default="", metavar="SETTINGS",
                        help="more --set for every fab, e.g. canary=1,batch_size=2 (batches; keep max_fail 0: "
                             "the invariants expect all or nothing)")
    parser.add_argument("--run-limit", type=float, default=60.0,
                        help="kill a fab run still going after this many seconds (counted as a violation)")
    parser.add_argument("--out", type=Path, help="write the summary table (markdown) here")
    parser.add_argument("--json", type=Path, help="write the violations and counts (JSON) here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory: every round's output")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(args.kinds) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {','.join(FAULTS)}")
    if args.hosts < 2 or args.rounds < 0:
        parser.error("--hosts must be >= 2 and --rounds >= 0")
    return args


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/chaos.py needs root: it starts sshd hosts in their own mount namespaces")

    def terminate(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # Both set explicitly: started in the background, a process inherits
    # SIGINT ignored, and Ctrl-C (or kill -INT) must still stop everything.
    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    chaos = Chaos(args)
    started = time.monotonic()
    aborted = None
    try:
        chaos.setup()
        chaos.warm_up()
        log(f"fleet of {args.hosts} up, warm-up done: deploy {chaos.est['deploy'][1]:.2f} s,"
            f" rollback {chaos.est['rollback'][1]:.2f} s; work directory {chaos.work}")
        for round_no in range(args.first_round, args.first_round + args.rounds):
            chaos.play(round_no)
    except KeyboardInterrupt as e:
        aborted = f"interrupted ({e.args[0] if e.args else 'SIGINT'})"
        log(f"{aborted}: stopping everything this run started")
    except Abort as e:
        aborted = str(e)
        log(f"stopping: {e}")
    finally:
        # A second Ctrl-C must not cut the clean-up short: ignored until it is done.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            chaos.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    wall = time.monotonic() - started
    text = summary(chaos, argv, wall, aborted)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json_text(chaos, argv, wall, aborted))
    if aborted:
        return 130 if aborted.startswith("interrupted") else 2
    return 1 if chaos.violations else 0


if __name__ == "__main__":
    sys.exit(main())
