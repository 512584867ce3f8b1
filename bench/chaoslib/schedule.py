"""The seeded schedule: each round's action and fault, from (seed, round) alone.

Nothing here looks at a clock or the fleet, so ``--seed S --first-round R``
replays round R's schedule exactly (see the docstring of bench/chaos.py).
"""

import random
from dataclasses import dataclass, field

ACTIONS = ("deploy", "rollback", "pair")
ACTION_WEIGHTS = (6, 3, 1)
FAULTS = {
    "cut": "TCP connection reset mid-command (random host, moment, direction, byte offset)",
    "sshd_kill": "a host's sshd and its sessions killed, restarted a little later",
    "sigint": "controller sent SIGINT",
    "sigterm": "controller sent SIGTERM",
    "sigkill": "controller sent SIGKILL",
    "disk_full": "a host's /srv filled (0-256 KB left) until the round ends",
    "slow": "a host's link made slow (proxy delay, 20 ms-1.5 s each way)",
    "hang": "a host stopped (SIGSTOP), all of it or the commands it runs, for 0.2-5 s",
    "hook_fail": "a fabfile hook fails on one host",
    "second_deploy": "a second deploy started while one runs",
}
HOOK_STAGES = {"deploy": ("started", "updated", "published", "finished"),
               "rollback": ("started", "reverted", "published", "finished")}
# The stage lines ("* updated (0.01s)") fab prints as each stage ends on every host.
STAGE_LINES = {"deploy": ("starting", "started", "updating", "updated", "publishing", "published", "finishing"),
               "rollback": ("starting", "started", "reverting", "reverted", "publishing", "published")}


@dataclass
class Fault:
    kind: str
    host: str = None
    frac: float = 0.0          # when: a fraction of the action's usual time from connecting to the end,
    anchor: str = None         # or: this long (``frac`` seconds) after run A prints that stage's line
    params: dict = field(default_factory=dict)

    def describe(self):
        p = self.params
        at = f"@{self.anchor}+{self.frac * 1000:.0f}ms" if self.anchor else f"@{self.frac:+.2f}"
        if self.kind == "cut":
            return f"cut({self.host} {p['direction']} +{p['after_bytes']}B {at})"
        if self.kind == "sshd_kill":
            return f"sshd_kill({self.host} {at}, down {p['down_for']:.2f}s)"
        if self.kind in ("sigint", "sigterm", "sigkill"):
            return f"{self.kind}({at})"
        if self.kind == "disk_full":
            return f"disk_full({self.host} {at}, {p['leave_kb']} KB left)"
        if self.kind == "slow":
            return f"slow({self.host} {at}, {p['delay'] * 1000:.0f} ms)"
        if self.kind == "hang":
            what = "host" if p["mode"] == "host" else f"commands in {p['window'] * 1000:.0f}ms"
            return f"hang({self.host} {what} {at}, {p['hold']:.2f}s)"
        if self.kind == "hook_fail":
            return f"hook_fail({self.host} after {p['stage']})"  # no moment: the hook decides
        if self.kind == "second_deploy":
            return f"second_deploy({at})"
        return self.kind


@dataclass
class Schedule:
    round: int
    seed: int
    action: str
    fault: Fault = None

    def describe(self):
        return f"{self.action:<8} {self.fault.describe() if self.fault else '-'}"


def make_schedule(seed, round_no, hosts, kinds):
    """Round ``round_no``'s schedule, from (seed, round) alone.

    Fault kinds are drawn without replacement in blocks of len(kinds) + 1
    (the +1 is a round without a fault), so a short run still meets every
    kind; every other choice comes from this round's own Random.
    """
    slots = sorted(kinds) + [None]
    block = random.Random(f"fake-chaos:{seed}:block:{round_no // len(slots)}")
    block.shuffle(slots)
    kind = slots[round_no % len(slots)]
    rng = random.Random(f"fake-chaos:{seed}:round:{round_no}")
    action = rng.choices(ACTIONS, weights=ACTION_WEIGHTS)[0]
    host = rng.choice(hosts)
    task = "rollback" if action == "rollback" else "deploy"
    # Half the faults come at a moment drawn over the whole run, half just
    # after a stage ends: the stages that change hosts (update, switch,
    # finish) take tens of ms of a run's second, and a fault drawn over the
    # whole run would rarely land in them.
    if rng.random() < 0.5:
        anchor, frac = None, rng.uniform(-0.15, 1.0)
    else:
        anchor, frac = rng.choice(STAGE_LINES[task]), rng.uniform(0.0, 0.06)
    sched = Schedule(round_no, seed, action)
    if kind is None:
        return sched
    params = {}
    if kind == "cut":
        params["direction"] = rng.choice(("up", "down"))
        # A deploy moves about 8 KB up and 4 KB down per host, half of it the
        # SSH handshake, so offsets are small: most cuts land in a command.
        params["after_bytes"] = rng.choice((0, rng.randrange(1, 200), rng.randrange(200, 1500)))
    elif kind == "sshd_kill":
        params["down_for"] = rng.uniform(0.1, 0.8)
    elif kind == "disk_full":
        params["leave_kb"] = rng.choice((0, 4, 16, 64, 256))
    elif kind == "slow":
        params["delay"] = rng.choice((rng.uniform(0.02, 0.25), rng.uniform(0.6, 1.5)))
    elif kind == "hang":
        params["mode"] = rng.choice(("host", "commands"))
        params["window"] = 0.0
        if params["mode"] == "commands":
            # Held commands matter when they are the ones that change a host:
            # stop whatever starts in the next 30-100 ms after a stage ends.
            anchor, frac = rng.choice(STAGE_LINES[task]), rng.uniform(0.0, 0.02)
            params["window"] = rng.uniform(0.03, 0.1)
        params["hold"] = rng.choice((rng.uniform(0.2, 1.0), rng.uniform(2.5, 5.0)))
    elif kind == "hook_fail":
        params["stage"] = rng.choice(HOOK_STAGES["rollback" if action == "rollback" else "deploy"])
    sched.fault = Fault(kind, host if kind not in ("sigint", "sigterm", "sigkill", "second_deploy") else None,
                        frac, anchor, params)
    return sched
