"""The harness: a fleet behind the fault proxy, the warm-up, and one round after another.

Chaos holds what a run records across rounds (commits, the release each
deploy made, the hosts' logs and shared/ as last seen, the counts); the
round itself is `Chaos.play`, which draws the schedule, drives the fault
(faults.py), checks (invariants.py), repairs (repair.py) and records
(report.py).
"""

import collections
import hashlib
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from faultproxy import FaultProxy
from tests.e2e.conftest import fab_bin
from tests.e2e.sshd import Fleet, _chown_tree, _git, commit, ensure_test_user, make_repo

from . import Abort, log
from .fabrun import FabRun
from .faults import HostFaults, run_events
from .fixture import APP, FABFILE, HOOK_LOG, LINKED_DIRS, LINKED_FILES, SHARED_FILES, SRV_SIZE
from .hostview import HostView
from .invariants import check, oddities
from .repair import can_roll_back, recover_from_sigkill, repair, unsound
from .report import write_round
from .schedule import make_schedule

ROOT = Path(__file__).resolve().parents[2]


class Chaos:
    """One chaos run: its fleet, proxy and work directory, and all it records across rounds."""

    def __init__(self, args):
        self.args = args
        self.fab_path = fab_bin if fab_bin.exists() else ROOT / ".venv" / "bin" / "fab"
        self.live_runs = {}         # pid -> FabRun, for the exit path
        self.host_faults = None     # HostFaults: what a hang stopped, a full disk, a dead sshd
        self.fleet = self.proxy = None
        self.work = None
        self.commits = []           # every commit the harness made, in order
        self.release_commit = {}    # release name -> commit, from the deploy that made it
        self.deploy_log = []        # (round, run label, release, commit) per deploy
        self.violations = []
        self.faults_scheduled = collections.Counter()
        self.faults_effective = collections.Counter()
        self.actions = collections.Counter()
        self.round_times = []
        self.fab_times = []         # per round, the longest fab run's own time
        self.sigkill_pending = None  # the killed run's pid, until the next round recovers
        self.sigkill_reports = []   # what the next deploy said about the dead run's lock
        self.repairs = 0
        self.est = {"deploy": [0.5, 1.0], "rollback": [0.5, 1.0]}  # seconds to connect, to end
        self.log_state = {}         # host -> (size, sha256 of the whole log)
        self.shared_base = {}       # host -> {path: sha256}
        self.rounds_done = 0
        self.odd = []               # findings outside the invariants (tracebacks, silent failures)
        self.evidence = {}          # round -> its runs' stderr, for rounds with violations or findings

    # -- set-up and tear-down ---------------------------------------------------
    def setup(self):
        self.work = Path(tempfile.mkdtemp(prefix="fake-chaos-"))
        self.work.chmod(0o755)
        self.home = self.work / "home"
        self.home.mkdir()
        # With scm=copy, fab runs git here, as root, on a repository the test user owns.
        (self.home / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
        self.project = self.work / "project"
        self.project.mkdir()
        self.project.chmod(0o755)
        self.rounds_dir = self.work / "rounds"
        self.rounds_dir.mkdir()
        names = [f"web{i}" for i in range(1, self.args.hosts + 1)]
        self.fleet = Fleet(self.args.hosts, workdir=self.work / "fleet", names=names)
        self.names = names
        self.hosts = {h.name: h for h in self.fleet.hosts}
        self.host_faults = HostFaults(self.hosts)
        self.proxy = FaultProxy({h.name: h.port for h in self.fleet.hosts})
        self.ssh_config = self.fleet.write_ssh_config(self.work / "ssh_config", ports=self.proxy.ports)
        self.repo = self.work / "repo"
        self.commits.append(make_repo(self.repo))
        (self.project / "fabfile.py").write_text(FABFILE.format(
            hosts=names, app=APP, repo=str(self.repo), linked_files=LINKED_FILES,
            linked_dirs=LINKED_DIRS, hook_log=HOOK_LOG))
        pw = ensure_test_user()
        for host in self.fleet.hosts:
            # A small /srv, so a disk-full fault costs little to make.
            host.sh(f"mount -o remount,size={SRV_SIZE} /srv && mkdir -p {APP}/shared")
            root = Path(f"/proc/{host.pid}/root")  # this host's view of the filesystem
            for path, data in SHARED_FILES.items():
                target = root / APP.lstrip("/") / "shared" / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            host.sh(f"chown -R {pw.pw_uid}:{pw.pw_gid} /srv")
        for host in self.fleet.hosts:
            view = self.read(host)
            self.shared_base[host.name] = {p: d for p, d in view.shared.items() if p != HOOK_LOG}
            self.log_state[host.name] = (view.log_size, view.log_all)
        expected = {p: hashlib.sha256(d).hexdigest() for p, d in SHARED_FILES.items()}
        for name, base in self.shared_base.items():
            if base != expected:
                raise Abort(f"{name}: shared/ was not set up as intended: {base}")

    def close(self):
        """Stop everything this harness started, by PID: fab runs, stopped hosts, sshd hosts, the proxy."""
        for run in list(self.live_runs.values()):
            try:
                run.kill()
            except Exception:
                pass
        if self.host_faults is not None:
            self.host_faults.thaw_all()
        if self.proxy is not None:
            self.proxy.close()
        if self.fleet is not None:
            self.fleet.close()
        if self.work is not None:
            if self.args.keep:
                log(f"work directory kept: {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)

    # -- host helpers ----------------------------------------------------------
    def read(self, host):
        prev, _ = self.log_state.get(host.name, (0, ""))
        return HostView.read(Path(f"/proc/{host.pid}/root"), prev)

    def quiesce(self, limit=10.0):
        """Wait until no session runs on any host (a killed controller's commands may still be running)."""
        deadline = time.monotonic() + limit
        busy = []
        for name, host in self.hosts.items():
            while True:
                others = [p for p in host._namespace_pids() if p != host.pid]
                if not others:
                    break
                if time.monotonic() > deadline:
                    busy.append(name)
                    break
                time.sleep(0.02)
        return busy

    def new_commit(self, round_no, label):
        sha = commit(self.repo, {"VERSION": f"{round_no}{label}\n",
                                 "app.py": f"print('round {round_no}{label}')\n"}, f"round {round_no}{label}")
        self.commits.append(sha)
        if len(self.commits) % 250 == 0:
            _git(self.repo, "gc", "--quiet")  # keeps each commit's chown of the tree cheap
            _chown_tree(self.repo, ensure_test_user())
        return sha

    def learn(self, run, round_no):
        """Record which commit a deploy's release holds, as the deploy said it."""
        if run.task != "deploy":
            return
        name = run.release()
        sha = None
        if run.report:
            shas = {h.get("commit") for h in run.report.get("hosts", {}).values()} - {None}
            if len(shas) == 1:
                sha = shas.pop()
        if sha is None and run.banner_sha():
            short = run.banner_sha()
            matches = [c for c in self.commits if c.startswith(short)]
            sha = matches[-1] if matches else None
        if name and sha:
            self.release_commit[name] = sha  # the latest deploy to announce a name owns it
            self.deploy_log.append((round_no, run.label, name, sha))
            with open(self.work / "deploys.tsv", "a") as f:
                f.write(f"{round_no}\t{run.label}\t{name}\t{sha}\texit {run.exit}\n")
            return f"{run.label}:{sha[:7]}->{name}"
        return None

    def fab(self, task, rdir, label, extra_env=None, limit=None):
        run = FabRun(self, label, task, rdir, extra_env)
        deadline = time.monotonic() + (limit or self.args.run_limit)
        while run.alive():
            if time.monotonic() > deadline:
                run.kill()
                break
            time.sleep(0.01)
        run.collect()
        return run

    # -- warm-up -----------------------------------------------------------------
    def warm_up(self):
        """Three deploys and a rollback, no faults: releases to roll back to, and the usual timings."""
        rdir = self.rounds_dir / "warmup"
        rdir.mkdir()
        times = {"deploy": [], "rollback": []}
        for i, task in enumerate(("deploy", "deploy", "rollback", "deploy")):
            if task == "deploy":
                self.new_commit(0, f"w{i}")
            self.proxy.reset()
            run = self.fab(task, rdir, f"w{i}-{task}")
            connects = self.proxy.connect_times()
            if run.exit != 0:
                raise Abort(f"warm-up {task} failed (exit {run.exit}):\n{run.stderr[-3000:]}")
            self.learn(run, 0)
            first = min((t for t in connects if t >= run.started), default=run.started + 0.4)
            if i > 0:
                times[task].append((first - run.started, run.duration))
        for task, seen in times.items():
            self.est[task] = [statistics.median(t for t, _ in seen), statistics.median(d for _, d in seen)]
        for host in self.fleet.hosts:
            view = self.read(host)
            self.log_state[host.name] = (view.log_size, view.log_all)

    # -- one round ------------------------------------------------------------------
    def play(self, round_no):
        sched = make_schedule(self.args.seed, round_no, self.names, self.args.kinds)
        rdir = self.rounds_dir / f"{round_no:05d}"
        rdir.mkdir()
        started = time.monotonic()
        notes = []
        if self.sigkill_pending is not None:
            notes += recover_from_sigkill(self, round_no, rdir)
        if sched.action == "rollback" and not can_roll_back(self):
            # A rollback archives and removes the release it leaves, so two in a
            # row would find nothing to go back to; give this one something.
            self.new_commit(round_no, "p")
            run = self.fab("deploy", rdir, "prep-deploy")
            self.learn(run, round_no)
            notes.append("deployed first, to have a release to roll back to"
                         + ("" if run.exit == 0 else f" (that deploy exited {run.exit})"))
        before = {n: self.read(h) for n, h in self.hosts.items()}
        fault = sched.fault
        env = {}
        if fault and fault.kind == "hook_fail":
            env["CHAOS_HOOK"] = f"{fault.params['stage']}:{fault.host}:{round_no}"
        task = "rollback" if sched.action == "rollback" else "deploy"
        if task == "deploy":
            self.new_commit(round_no, "a")
        self.proxy.reset()
        runs = [FabRun(self, "A", task, rdir, env)]
        if sched.action == "pair":
            runs.append(FabRun(self, "B", "deploy", rdir, env))
        t0 = runs[0].started
        est_connect, est_end = self.est[task]
        at = None
        if fault and not fault.anchor:
            at = t0 + est_connect + fault.frac * max(0.1, est_end - est_connect)
        if fault and fault.kind == "hook_fail":
            at = t0  # the env var is the fault; whether it fired is read from the hook's log line
        effect = run_events(self, sched, runs, rdir, at, env)
        cuts = self.proxy.reset()
        if fault and fault.kind == "disk_full":
            self.host_faults.unfill_disk(fault.host)
        self.host_faults.ensure_up()
        busy = self.quiesce()
        if busy:
            notes.append(f"sessions still running after 10 s on {', '.join(busy)}")
        deployed = []
        for run in runs:
            run.collect()
            deployed.append(self.learn(run, round_no))
        if fault and fault.kind == "cut":
            effect = [c for c in cuts if any(c["at"] <= (r.ended or time.monotonic()) for r in runs)]
        if fault and fault.kind == "hook_fail":
            hook_log = Path(f"/proc/{self.hosts[fault.host].pid}/root") / APP.lstrip("/") / "shared" / HOOK_LOG
            try:
                effect = f"round={round_no} host={fault.host} " in hook_log.read_text(errors="replace")
            except FileNotFoundError:
                effect = False
        if fault:
            self.faults_scheduled[fault.kind] += 1
        if fault and effect:
            self.faults_effective[fault.kind] += 1
        after = {n: self.read(h) for n, h in self.hosts.items()}
        killed = any(signal.SIGKILL in r.signals for r in runs)
        found = check(sched, runs, before, after, effect, killed, release_commit=self.release_commit,
                      shared_base=self.shared_base, log_state=self.log_state, names=self.names,
                      run_limit=self.args.run_limit)
        if killed:
            self.sigkill_pending = next(r.pid for r in runs if signal.SIGKILL in r.signals)
        self.violations += found
        odd = oddities(sched, runs)
        self.odd += odd
        repaired = not killed and (found or unsound(self, after))
        if repaired:
            notes += repair(self, round_no, rdir, found, after)
        # What this round leaves is the next round's "before".
        for name, host in self.hosts.items():
            view = self.read(host) if repaired else after[name]
            self.log_state[name] = (view.log_size, view.log_all)
            if any(v.invariant == 3 and v.host == name for v in found):
                self.shared_base[name] = {p: d for p, d in view.shared.items() if p != HOOK_LOG}
        if not fault and all(r.exit == 0 for r in runs) and sched.action != "pair":
            connects = [t for t in self.proxy.connect_times() if t >= t0]
            first = (min(connects) - t0) if connects else self.est[task][0]
            self.est[task] = [0.8 * self.est[task][0] + 0.2 * first, 0.8 * self.est[task][1] + 0.2 * runs[0].duration]
        elapsed = time.monotonic() - started
        fab_time = max(r.duration for r in runs)
        self.round_times.append(elapsed)
        self.fab_times.append(fab_time)
        self.rounds_done += 1
        self.actions[sched.action] += 1
        exits = ",".join(str(r.exit) for r in runs)
        fired = "" if not fault else (" (took effect)" if effect else " (no effect)")
        status = "ok" if not found else f"{len(found)} VIOLATION(S)"
        used = " ".join(d for d in deployed if d)
        log(f"round {round_no:4d}: {sched.describe()}{fired} -> exit {exits}{' ' + used if used else ''}"
            f" [{elapsed:.2f} s, fab {fab_time:.2f} s] {status}"
            + (f" ({'; '.join(notes)})" if notes else ""))
        for v in found:
            log(f"    {v.line()}")
        for o in odd:
            log(f"    note: {o}")
        write_round(self, rdir, sched, runs, found, notes, effect)
        if found or odd:  # kept in --json: the work directory goes at exit without --keep
            self.evidence[str(round_no)] = {
                "schedule": sched.describe(), "notes": notes,
                "runs": {r.label: {"task": r.task, "exit": r.exit, "stderr": r.stderr[-2500:]} for r in runs}}
        if not self.args.keep and not found:
            shutil.rmtree(rdir, ignore_errors=True)
