"""What each fault does to the fleet while a round's runs go on, and how it is undone.

The schedule (schedule.py) says which fault and when; this module makes it
happen: through the proxy (cut, slow), to the controller (signals, a second
deploy), or to a host itself (HostFaults: sshd killed, SIGSTOP, a full /srv).
"""

import os
import signal
import time

from . import Abort
from .fabrun import FabRun
from .fixture import FILL


class HostFaults:
    """The faults done to a host directly, and their undoing; ``frozen`` is what a hang stopped."""

    def __init__(self, hosts):
        self.hosts = hosts          # name -> tests.e2e.sshd host
        self.frozen = {}            # host name -> pids stopped by a hang fault

    def ensure_up(self):
        """Every host answers again: thawed, and its sshd restarted if a fault killed it."""
        for name, host in self.hosts.items():
            if name in self.frozen:
                self.thaw(name)
            if not host.running:
                for attempt in range(3):
                    try:
                        host.restart()
                        break
                    except Exception as e:  # noqa: BLE001 - retried, then fatal
                        if attempt == 2:
                            raise Abort(f"{name}: sshd would not restart: {e}") from e
                        time.sleep(0.2)

    def freeze(self, name, mode="host", window=0.0):
        """SIGSTOP a host's processes until `thaw`.

        ``host``: all of them, sshd too (a paused VM: nothing answers).
        ``commands``: only what its sessions run (shells, git, mv...), and
        every such process that starts within ``window`` seconds; sshd
        keeps serving, so a later command (Fake's clean-up) runs while the
        stopped one is held (a stalled disk or NFS).
        """
        host = self.hosts[name]
        stopped = self.frozen.setdefault(name, [])
        deadline = time.monotonic() + window
        while True:
            for pid in [host.pid] + host._namespace_pids():
                if pid in stopped:
                    continue
                if mode == "commands" and _comm(pid) in ("sshd", "sshd-session", None):
                    continue
                try:
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                except ProcessLookupError:
                    pass
            if time.monotonic() >= deadline:
                break
            time.sleep(0.001)

    def thaw(self, name):
        for pid in self.frozen.pop(name, []):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def thaw_all(self):
        for name in list(self.frozen):
            self.thaw(name)

    def fill_disk(self, name, leave_kb):
        self.hosts[name].sh(f"a=$(df -k --output=avail /srv | tail -1); n=$((a - {leave_kb})); "
                            f"if [ $n -gt 0 ]; then fallocate -l ${{n}}k {FILL} || head -c ${{n}}k /dev/zero > {FILL}; fi",
                            check=False)

    def unfill_disk(self, name):
        self.hosts[name].sh(f"rm -f {FILL}", check=False)


# Going live in batches (--fab-set canary=..., batch_size=...), the console prints a line per
# batch instead of the publishing and published stage lines: a fault anchored on those waits for
# the first batch's line (it lands in the next batch, or in the last one's health gate) or the
# second's, else it would never fire.
BATCH_ANCHORS = {"publishing": "\nbatch 1/", "published": "\nbatch 2/"}


def anchor_text(chaos, anchor):
    """The console text after which an anchored fault's moment is counted."""
    rolling = any(key in (chaos.args.fab_set or "") for key in ("batch_size", "canary"))
    if rolling and anchor in BATCH_ANCHORS:
        return BATCH_ANCHORS[anchor]
    return f"* {anchor} ("


def run_events(chaos, sched, runs, rdir, at, env):
    """Drive the round's fault while its runs go on; returns what took effect (truthy) or None.

    A fault whose moment comes after every run has ended never happens.
    What undoes a fault (a restart, a thaw) happens at its time even if
    the runs ended first, and always before the round is checked.
    """
    fault = sched.fault
    effect = None
    injected = fault is None
    pending = []  # [due, fn]
    deadline = runs[0].started + chaos.args.run_limit
    stage_line = anchor_text(chaos, fault.anchor) if fault and fault.anchor and at is None else None
    while True:
        now = time.monotonic()
        active = [r for r in runs if r.alive()]
        if stage_line and stage_line in runs[0].out_path.read_text(errors="replace"):
            at, stage_line = now + fault.frac, None
        if not injected and ((at is not None and now >= at) or not active):
            injected = True
            if active:
                effect = inject(chaos, sched, runs, rdir, env, pending, now)
        for item in [p for p in pending if now >= p[0]]:
            pending.remove(item)
            item[1]()
        if not any(r.alive() for r in runs):
            if not pending:
                break
            time.sleep(max(0.0, min(p[0] for p in pending) - time.monotonic()))
            continue
        if now > deadline:
            for run in runs:
                if run.alive():
                    run.kill()
                    run.hung = True
            continue
        time.sleep(0.005)
    return effect


def inject(chaos, sched, runs, rdir, env, pending, now):
    """Do the round's fault now; returns True if it took effect, None if that is known only later (a cut)."""
    fault = sched.fault
    kind, name = fault.kind, fault.host
    if kind == "cut":
        chaos.proxy.cut(name, fault.params["direction"], fault.params["after_bytes"])
        return None  # took effect only if it fired: see the proxy's events
    if kind == "sshd_kill":
        chaos.hosts[name].crash()
        pending.append([now + fault.params["down_for"], chaos.hosts[name].restart])
        return True
    if kind in ("sigint", "sigterm", "sigkill"):
        sig = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[kind]
        return runs[0].signal(sig) or None
    if kind == "disk_full":
        chaos.host_faults.fill_disk(name, fault.params["leave_kb"])
        return True
    if kind == "slow":
        chaos.proxy.set_delay(name, fault.params["delay"])
        return True
    if kind == "hang":
        chaos.host_faults.freeze(name, fault.params["mode"], fault.params["window"])
        pending.append([now + fault.params["hold"], lambda: chaos.host_faults.thaw(name)])
        return True
    if kind == "hook_fail":
        return True  # decided by the hook; checked through its log line
    if kind == "second_deploy":
        label = "BC"[len(runs) - 1]
        chaos.new_commit(sched.round, label.lower())
        runs.append(FabRun(chaos, label, "deploy", rdir, env))
        return True
    raise ValueError(kind)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None
