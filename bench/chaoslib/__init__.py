"""The parts of bench/chaos.py, the chaos rounds for Fake.

bench/chaos.py is the entry point and its docstring defines the invariants;
this package holds the parts, each small enough to read on its own:

- fixture: the project and fleet the rounds play on (fabfile, shared/ content)
- schedule: the seeded schedule (Fault, Schedule, make_schedule)
- fabrun: one ``fab`` process (FabRun)
- hostview: a host read through /proc/<pid>/root (HostView)
- faults: what each fault does to the fleet, and how it is undone
- invariants: the checks after a round (Violation, check, oddities)
- repair: recovering from a killed controller, repairing the fleet
- report: the per-round record, the summary table and the JSON
- harness: Chaos, the set-up, warm-up and round loop

Modules import ``faultproxy`` and ``tests.e2e`` as top-level names:
bench/chaos.py puts bench/ and the repository on sys.path first.
"""

import sys


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


class Abort(Exception):
    """The harness cannot go on (the fleet could not be repaired)."""
