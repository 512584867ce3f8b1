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
   `_names_with_release`: "host <release>" as in the rollback refusal, or
   "host ... switched back to / is on / is left on <release>"; not a
   summary-table row, nor an error line that merely contains the release).
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
import collections
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from faultproxy import FaultProxy  # noqa: E402
from tests.e2e.conftest import fab_bin  # noqa: E402
from tests.e2e.sshd import Fleet, _chown_tree, _git, commit, ensure_test_user, make_repo  # noqa: E402
from tests.e2e.test_deploy import APP  # noqa: E402

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
INVARIANTS = {
    1: "current is a complete release with the logged commit",
    2: "hosts agree, or a failed run named each that differs",
    3: "shared/ files unchanged",
    4: "revisions.log only grows",
    5: "nothing half-made or left over (lock, temp link, upload)",
    6: "a failed run exits non-zero and names its failed hosts",
    0: "every run ends in time (harness)",
}
HOOK_STAGES = {"deploy": ("started", "updated", "published", "finished"),
               "rollback": ("started", "reverted", "published", "finished")}
# The stage lines ("* updated (0.01s)") fab prints as each stage ends on every host.
STAGE_LINES = {"deploy": ("starting", "started", "updating", "updated", "publishing", "published", "finishing"),
               "rollback": ("starting", "started", "reverting", "reverted", "publishing", "published")}
LINKED_FILES = ["config/app.ini", "config/database.yml"]
LINKED_DIRS = ["static", "var/uploads"]
SHARED_FILES = {
    "config/app.ini": b"secret=1\n",
    "config/database.yml": b"production:\n  adapter: postgresql\n  password: hunter2\n",
    "static/logo.bin": bytes(random.Random(7).randrange(256) for _ in range(4096)),
    "var/uploads/user-1.txt": b"an upload that must survive every deploy\n",
}
HOOK_LOG = "var/uploads/chaos-hook.log"  # the one shared file a hook may write
BAD_MARKER = ".fake-bad"  # fake.tasks.layout.BAD_MARKER: a release switched back after a failed deploy
SRV_SIZE = "32m"
FILL = "/srv/chaos-fill"
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RELEASE = re.compile(r"^\d{14}$")
DEAD_WORDS = re.compile(r"no longer running|not running|is dead|has died|died|stale|crashed|was killed|is gone",
                        re.I)

FABFILE = '''# fabfile.py for bench/chaos.py (written by it).
import os

from fake.api import env, run, task
from fake.tasks.deploy import *

env.roledefs = {{"production": {{"hosts": {hosts!r}, "branch": "master"}}}}
env.deploy_path = {app!r}
env.repo_url = {repo!r}
env.scm = os.environ.get("CHAOS_SCM", "git")
env.keep_releases = 4
env.linked_files = {linked_files!r}
env.linked_dirs = {linked_dirs!r}

# CHAOS_HOOK=stage:host:round registers a hook on that stage only for this
# run, so rounds without it keep Fake's default flow (no fabfile task after
# finish, so the finishing command releases the lock). It appends a line to
# a shared file, as a real hook might, then fails on the named host.
_hook = os.environ.get("CHAOS_HOOK")
if _hook:
    _stage, _victim, _round = _hook.split(":")

    @task
    def chaos_hook():
        line = "round=" + _round + " host=" + env.host_string + " stage=" + _stage
        fail = "; exit 7" if env.host_string == _victim else ""
        run("echo '" + line + "' >> {app}/shared/{hook_log}" + fail)

    after(_stage, chaos_hook)
'''


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


class Abort(Exception):
    """The harness cannot go on (the fleet could not be repaired)."""


# -- the schedule ---------------------------------------------------------------
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


# -- one fab process ------------------------------------------------------------
class FabRun:
    """``fab -R production TASK`` in its own session (so a Ctrl-C of ours never reaches it)."""

    def __init__(self, chaos, label, task, rdir, extra_env=None):
        self.label, self.task = label, task
        self.report_path = rdir / f"{label}.report.json"
        self.out_path, self.err_path = rdir / f"{label}.out", rdir / f"{label}.err"
        self.argv = [str(chaos.fab_path), "-S", str(chaos.ssh_config), "-R", "production",
                     "--set", f"command_timeout={chaos.args.command_timeout},"
                              f"connect_timeout={chaos.args.connect_timeout}"
                              + (f",{chaos.args.fab_set}" if chaos.args.fab_set else ""),
                     "--report", str(self.report_path), task]
        env = {"PATH": CHILD_PATH, "HOME": str(chaos.home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "USER": "root", "LOGNAME": "root", "TERM": "dumb", "CHAOS_SCM": chaos.args.scm}
        env.update(extra_env or {})
        self.env = env
        self.signals = []
        self.hung = False
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.started = time.monotonic()
            # No preexec_fn (not safe with the proxy's thread running): fab
            # gets SIGINT at its default because main() handles SIGINT, and
            # exec resets a handled signal (tests' default_sigint is for
            # callers that may have it ignored).
            self.proc = subprocess.Popen(self.argv, cwd=chaos.project, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True)
        chaos.live_runs[self.proc.pid] = self
        self._chaos = chaos
        self.ended = None
        self.exit = None
        self.stdout = self.stderr = ""
        self.report = None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        if self.ended is None and self.proc.poll() is not None:
            self.ended = time.monotonic()
            self.exit = self.proc.returncode
            self._chaos.live_runs.pop(self.proc.pid, None)
        return self.ended is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                return False
            self.signals.append(sig)
            return True
        return False

    def kill(self):
        """SIGKILL by PID (the harness's own limit, or exit)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.alive()

    def collect(self):
        self.stdout = self.out_path.read_text(errors="replace")
        self.stderr = self.err_path.read_text(errors="replace")
        try:
            self.report = json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            self.report = None

    @property
    def duration(self):
        return (self.ended or time.monotonic()) - self.started

    # what the run says it did
    def release(self):
        """The deploy's release name: from the report, else the banner (a killed run writes no report)."""
        if self.report:
            names = {h.get("release") for h in self.report.get("hosts", {}).values()} - {None}
            if self.task == "deploy" and len(names) == 1:
                return names.pop()
        m = re.search(r"as release (\d{14})", self.stdout)
        return m.group(1) if m and self.task == "deploy" else None

    def banner_sha(self):
        m = re.search(r"^deploying .* \(([0-9a-f]{7,})\) to ", self.stdout, re.M)
        return m.group(1) if m else None

    def targets(self):
        """Per host, the release this run moved it to (rollback targets differ per host only with --force)."""
        out = {}
        if self.report:
            for host, info in self.report.get("hosts", {}).items():
                if info.get("release"):
                    out[host] = info["release"]
        if not out and self.task == "rollback":
            m = re.search(r"^rolling back .* from release \d{14} to (\d{14})", self.stdout, re.M)
            if m:
                out = {h: m.group(1) for h in self._chaos.names}
        return out


# -- reading a host -------------------------------------------------------------
@dataclass
class HostView:
    current: str = None                 # link text, None if no symlink
    current_notlink: bool = False
    releases: dict = field(default_factory=dict)   # name -> (rev or None, bad, links ok)
    hidden: set = field(default_factory=set)
    entries: set = field(default_factory=set)
    log_size: int = 0
    log_head: str = ""
    log_all: str = ""
    log_new: list = field(default_factory=list)
    lock: str = None
    shared: dict = field(default_factory=dict)
    fence: bool = False                 # .current.fake.tmp is a directory: a failed run's fence

    @property
    def live(self):
        if self.current and self.current.startswith("releases/"):
            return self.current[len("releases/"):]
        return None

    @classmethod
    def read(cls, root, log_prev=0):
        """Read deploy_path through ``root``, a host's /proc/<pid>/root: no process started on the host.

        Links are read, never followed: an absolute link would resolve in
        this process's namespace, not the host's.
        """
        v = cls()
        app = root / APP.lstrip("/")
        try:
            v.entries = set(os.listdir(app))
        except FileNotFoundError:
            return v
        fence = app / ".current.fake.tmp"
        v.fence = fence.is_dir() and not fence.is_symlink()
        current = app / "current"
        if current.is_symlink():
            v.current = os.readlink(current)
        elif current.exists():
            v.current_notlink = True
        releases = app / "releases"
        for name in sorted(os.listdir(releases)) if releases.is_dir() else []:
            path = releases / name
            if name.startswith(".") or path.is_symlink() or not path.is_dir():
                v.hidden.add(name)
                continue
            try:
                rev = (path / "REVISION").read_text().split("\n")[0] or None
            except (OSError, UnicodeDecodeError):
                rev = None
            links = all(_link_into_shared(root, path, p) for p in LINKED_FILES + LINKED_DIRS)
            v.releases[name] = (rev, (path / BAD_MARKER).exists(), links)
        try:
            data = (app / "revisions.log").read_bytes()
        except FileNotFoundError:
            data = b""
        v.log_size = len(data)
        v.log_head = hashlib.sha256(data[:log_prev]).hexdigest()
        v.log_all = hashlib.sha256(data).hexdigest()
        v.log_new = data[log_prev:].decode(errors="replace").splitlines()
        try:
            v.lock = (app / "deploy.lock").read_text(errors="replace")[:600].replace("\n", " ")
        except (FileNotFoundError, IsADirectoryError):
            v.lock = None
        shared = app / "shared"
        for dirpath, _, files in os.walk(shared):
            for name in files:
                path = Path(dirpath) / name
                if path.is_symlink():
                    continue
                v.shared[str(path.relative_to(shared))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return v


def _link_into_shared(root, release, path):
    """``release/path`` is a symlink to ``deploy_path/shared/path``, and that exists (on the host)."""
    link = release / path
    if not link.is_symlink():
        return False
    target = os.readlink(link)
    return target == f"{APP}/shared/{path}" and (root / target.lstrip("/")).exists()


@dataclass
class Violation:
    invariant: int
    seed: int
    round: int
    host: str
    text: str

    def line(self):
        where = f"{self.host}: " if self.host else ""
        return f"seed {self.seed} round {self.round}: [{self.invariant}] {where}{self.text}"


# -- the harness ----------------------------------------------------------------
class Chaos:
    def __init__(self, args):
        self.args = args
        self.fab_path = fab_bin if fab_bin.exists() else ROOT / ".venv" / "bin" / "fab"
        self.live_runs = {}         # pid -> FabRun, for the exit path
        self.frozen = {}            # host name -> pids stopped by a hang fault
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
        self.thaw_all()
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

    def ensure_up(self):
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
            notes += self.recover_from_sigkill(round_no, rdir)
        if sched.action == "rollback" and not self.can_roll_back():
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
        effect = self.run_events(sched, runs, rdir, at, env)
        cuts = self.proxy.reset()
        if fault and fault.kind == "disk_full":
            self.unfill_disk(fault.host)
        self.ensure_up()
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
        found = self.check(sched, runs, before, after, effect, killed)
        if killed:
            self.sigkill_pending = next(r.pid for r in runs if signal.SIGKILL in r.signals)
        self.violations += found
        odd = self.oddities(sched, runs)
        self.odd += odd
        repaired = not killed and (found or self.unsound(after))
        if repaired:
            notes += self.repair(round_no, rdir, found, after)
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
        self.write_round(rdir, sched, runs, found, notes, effect)
        if found or odd:  # kept in --json: the work directory goes at exit without --keep
            self.evidence[str(round_no)] = {
                "schedule": sched.describe(), "notes": notes,
                "runs": {r.label: {"task": r.task, "exit": r.exit, "stderr": r.stderr[-2500:]} for r in runs}}
        if not self.args.keep and not found:
            shutil.rmtree(rdir, ignore_errors=True)

    def run_events(self, sched, runs, rdir, at, env):
        """Drive the round's fault while its runs go on; returns what took effect (truthy) or None.

        A fault whose moment comes after every run has ended never happens.
        What undoes a fault (a restart, a thaw) happens at its time even if
        the runs ended first, and always before the round is checked.
        """
        fault = sched.fault
        effect = None
        injected = fault is None
        pending = []  # [due, fn]
        deadline = runs[0].started + self.args.run_limit
        stage_line = f"* {fault.anchor} (" if fault and fault.anchor and at is None else None
        while True:
            now = time.monotonic()
            active = [r for r in runs if r.alive()]
            if stage_line and stage_line in runs[0].out_path.read_text(errors="replace"):
                at, stage_line = now + fault.frac, None
            if not injected and ((at is not None and now >= at) or not active):
                injected = True
                if active:
                    effect = self.inject(sched, runs, rdir, env, pending, now)
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

    def inject(self, sched, runs, rdir, env, pending, now):
        fault = sched.fault
        kind, name = fault.kind, fault.host
        if kind == "cut":
            self.proxy.cut(name, fault.params["direction"], fault.params["after_bytes"])
            return None  # took effect only if it fired: see the proxy's events
        if kind == "sshd_kill":
            self.hosts[name].crash()
            pending.append([now + fault.params["down_for"], self.hosts[name].restart])
            return True
        if kind in ("sigint", "sigterm", "sigkill"):
            sig = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[kind]
            return runs[0].signal(sig) or None
        if kind == "disk_full":
            self.fill_disk(name, fault.params["leave_kb"])
            return True
        if kind == "slow":
            self.proxy.set_delay(name, fault.params["delay"])
            return True
        if kind == "hang":
            self.freeze(name, fault.params["mode"], fault.params["window"])
            pending.append([now + fault.params["hold"], lambda: self.thaw(name)])
            return True
        if kind == "hook_fail":
            return True  # decided by the hook; checked through its log line
        if kind == "second_deploy":
            label = "BC"[len(runs) - 1]
            self.new_commit(sched.round, label.lower())
            runs.append(FabRun(self, label, "deploy", rdir, env))
            return True
        raise ValueError(kind)

    # -- the invariants -----------------------------------------------------------
    def check(self, sched, runs, before, after, effect, killed):
        out = []
        seed, rnd = sched.seed, sched.round

        def bad(inv, host, text):
            out.append(Violation(inv, seed, rnd, host, text))

        for run in runs:
            if getattr(run, "hung", False):
                bad(0, None, f"run {run.label} ({run.task}) still running after {self.args.run_limit:.0f} s: killed")

        # 1. current is a complete release with the commit logged for it
        for name, view in after.items():
            if view.current_notlink:
                bad(1, name, "current is not a symlink")
                continue
            if view.current is None:
                bad(1, name, "no current")
                continue
            live = view.live
            if live is None or not RELEASE.match(live):
                bad(1, name, f"current -> {view.current!r}, not releases/<release>")
                continue
            if live not in view.releases:
                bad(1, name, f"current -> {view.current}, which does not exist (dangling)")
                continue
            rev, _, links = view.releases[live]
            want = self.release_commit.get(live)
            if rev is None:
                bad(1, name, f"current -> {view.current}, which has no REVISION")
            elif want is None:
                bad(1, name, f"current -> {view.current} (REVISION {rev[:12]}), a release no deploy logged")
            elif rev != want:
                bad(1, name, f"current -> {view.current} has REVISION {rev[:12]}, its deploy logged {want[:12]}")
            if not links:
                bad(1, name, f"current -> {view.current} lacks links into shared/")

        # 2. agreement, or the differing hosts named with what they have
        lives = {n: v.live or v.current for n, v in after.items()}
        changed = any(lives[n] != (before[n].live or before[n].current) for n in lives)
        if len(set(lives.values())) > 1 and changed and not killed:
            # Where the hosts should be: on the release of the round's last run to succeed, else where
            # they all were before (a failed run changes nothing), else (they differed already) where
            # most are.
            old = {before[n].live or before[n].current for n in before}
            ok = sorted((r for r in runs if r.exit == 0), key=lambda r: r.ended)
            if ok and ok[-1].targets():
                ref = collections.Counter(ok[-1].targets().values()).most_common(1)[0][0]
            elif ok and ok[-1].release():
                ref = ok[-1].release()
            elif len(old) == 1:
                ref = old.pop()
            else:
                ref = collections.Counter(lives.values()).most_common(1)[0][0]
            failed = [r for r in runs if r.exit not in (0, None)]
            for name, live in lives.items():
                if live == ref:
                    continue
                if not any(_names_with_release(r.stderr, name, live) for r in failed):
                    said = "no run failed" if not failed else "no failed run said so"
                    others = ", ".join(n for n, l in lives.items() if l == ref) or "no host"
                    bad(2, name, f"left on {live} while {others} have {ref}; {said}")

        # 3. shared/ files
        for name, view in after.items():
            now = {p: d for p, d in view.shared.items() if p != HOOK_LOG}
            for path, digest in self.shared_base[name].items():
                if path not in now:
                    bad(3, name, f"shared/{path} is gone")
                elif now[path] != digest:
                    bad(3, name, f"shared/{path} changed (sha256 {now[path][:12]}, was {digest[:12]})")

        # 4. revisions.log
        for name, view in after.items():
            size, whole = self.log_state[name]
            if size and (view.log_size < size or view.log_head != whole):
                bad(4, name, f"revisions.log was rewritten: its first {size} bytes changed"
                             f" (now {view.log_size} bytes)")

        # 5. nothing half-made or left over (a SIGKILLed controller cannot clean up)
        if not killed:
            for name, view in after.items():
                prior = before[name]
                logged = " ".join(view.log_new)
                for rel in sorted(set(view.releases) - set(prior.releases)):
                    rev, marked_bad, links = view.releases[rel]
                    want = self.release_commit.get(rel)
                    accounted = (rel == view.live or f"release {rel} " in logged + " "
                                 or f"Release {rel} was switched back" in logged or marked_bad)
                    if rev is None:
                        bad(5, name, f"half-made release {rel}: no REVISION")
                    elif want is None:
                        bad(5, name, f"release {rel} (REVISION {rev[:12]}) from no deploy the harness saw")
                    elif rev != want:
                        bad(5, name, f"release {rel} has REVISION {rev[:12]}, its deploy logged {want[:12]}")
                    elif not accounted:
                        bad(5, name, f"half-made release {rel}: not live, not logged, not marked bad"
                                     f" (a failed deploy's release left behind)")
                    elif not links:
                        bad(5, name, f"release {rel} lacks its links into shared/")
                for hidden in sorted(view.hidden - prior.hidden):
                    bad(5, name, f"releases/{hidden} left behind")
                allowed = {"repo", "releases", "shared", "current", "revisions.log"}
                for entry in sorted(view.entries - prior.entries - allowed):
                    if entry == "deploy.lock" or (entry == ".current.fake.tmp" and view.fence):
                        continue  # the lock is checked below; a fence stops a late switch (by design)
                    if re.fullmatch(r"rolled-back-release-\d{14}\.tar\.gz", entry):
                        continue
                    what = ("temp link" if entry == ".current.fake.tmp" else
                            "upload temp file" if entry.startswith(".fake-upload-") else
                            "archive in the making" if entry.startswith(".fake-archive") else "unexpected entry")
                    bad(5, name, f"{what} {entry} left in {APP}")
                if view.lock is not None:
                    bad(5, name, f"deploy.lock left: {view.lock.strip()[:160] or '(empty)'}")

        # 6. failed runs fail loudly, successful ones really succeeded
        def target(run, host):
            return run.targets().get(host) or (run.release() if run.task == "deploy" else None)

        def line(run, release):
            return (f"deployed as release {release} " if run.task == "deploy"
                    else f"rolled back to release {release} ")

        logged = {n: " ".join(v.log_new) + " " for n, v in after.items()}
        # A host did a run's work if it is on that run's release and logged it (whatever the exit:
        # a signal can come after the last host finished).
        success = {n: any(target(r, n) and after[n].live == target(r, n) and line(r, target(r, n)) in logged[n]
                          for r in runs) for n in after}
        for run in (r for r in runs if r.exit == 0):
            for name, view in after.items():
                want = target(run, name)
                if want is None or line(run, want) not in logged[name]:
                    bad(6, name, f"run {run.label} ({run.task}) exited 0 but {name}'s revisions.log"
                                 f" has no '{line(run, want).strip()}'")
                elif view.live not in {target(r, name) for r in runs}:
                    bad(6, name, f"run {run.label} ({run.task}) exited 0 but {name} is on {view.live},"
                                 f" the release of no run of this round")
        # A host a fault reached that did not end up deployed: a failed run names it, unless that
        # run failed on another host first (then the fleet stopped for that one's reason).
        failed = [r for r in runs if r.exit not in (0, None)]
        for name in sorted(self.hosts_hit(sched, runs, effect, after)):
            if success[name] or killed or not failed:  # exit 0 with the host not deployed: see above
                continue
            if any(_names_failed(r.stderr, name) for r in failed):
                continue
            if any(_names_failed(r.stderr, other) for r in failed for other in self.names if other != name):
                continue
            bad(6, name, f"{sched.fault.describe()} hit {name}, which did not end deployed; the run"
                         f" exited {','.join(str(r.exit) for r in failed)} naming no failed host")
        return out

    def oddities(self, sched, runs):
        """Things worth a look that no invariant covers (listed, not counted as violations)."""
        out = []
        for run in runs:
            for sig in run.signals:
                # Death by the signal itself (exit -N) is what a shell shows as 128+N too.
                if sig != signal.SIGKILL and run.exit not in (0, 128 + sig, -sig):
                    out.append(f"seed {sched.seed} round {sched.round}: run {run.label} got"
                               f" {signal.Signals(sig).name} and exited {run.exit}, not {128 + sig}"
                               + (" (and printed nothing)" if not run.stderr.strip() else ""))
            if "Traceback" in run.stderr:
                last = run.stderr.strip().splitlines()[-1][:160]
                out.append(f"seed {sched.seed} round {sched.round}: run {run.label} ({run.task}, "
                           f"signals {[signal.Signals(s).name for s in run.signals]}, exit {run.exit})"
                           f" printed a traceback: {last}")
            if not sched.fault and run.exit != 0 and sched.action != "pair":
                out.append(f"seed {sched.seed} round {sched.round}: run {run.label} ({run.task}) exited {run.exit}"
                           f" in a round without a fault: {(run.stderr.strip().splitlines() or [''])[0][:160]}")
            if run.exit not in (0, None) and run.exit > 0 and not run.signals and not run.stderr.strip():
                out.append(f"seed {sched.seed} round {sched.round}: run {run.label} exited {run.exit}"
                           f" with nothing on stderr")
        return out

    def hosts_hit(self, sched, runs, effect, after):
        """The hosts a fault of this round actually reached."""
        fault = sched.fault
        if not fault or not effect:
            return set()
        if fault.kind == "cut":
            return {c["name"] for c in effect}
        if fault.kind in ("sshd_kill", "disk_full", "slow", "hang", "hook_fail"):
            return {fault.host}
        return set()

    # -- recovery and repair ----------------------------------------------------------
    def recover_from_sigkill(self, round_no, rdir):
        """After a killed controller: a deploy (to read what Fake says about the lock), then unlock."""
        pid, self.sigkill_pending = self.sigkill_pending, None
        locked = [n for n, h in self.hosts.items() if self.read(h).lock]
        if not locked:
            self.sigkill_reports.append({"round": round_no, "killed_pid": pid, "lock_left": False})
            return ["no lock left by the killed run"]
        run = self.fab("deploy", rdir, "recover-deploy")
        self.learn(run, round_no)
        lines = [l for l in run.stderr.splitlines() if "locked by" in l]
        pid_named = any(f"pid {pid}" in l for l in lines)
        dead_said = any(DEAD_WORDS.search(l) for l in lines) or bool(DEAD_WORDS.search(run.stderr))
        self.sigkill_reports.append({"round": round_no, "killed_pid": pid, "lock_left": True,
                                     "locked_hosts": locked, "exit": run.exit, "pid_named": pid_named,
                                     "dead_said": dead_said, "message": (lines or [run.stderr.strip()[:300]])[0]})
        unlock = self.fab("unlock", rdir, "recover-unlock")
        if unlock.exit != 0:
            raise Abort(f"round {round_no}: fab unlock failed after a SIGKILL:\n{unlock.stderr[-2000:]}")
        return [f"recovered from SIGKILL of pid {pid}: lock on {','.join(locked)}; the deploy's message"
                f" {'named' if pid_named else 'did not name'} the pid and "
                f"{'said' if dead_said else 'did not say'} it is dead"]

    def can_roll_back(self):
        """Every host has a release older than its live one that is not marked bad."""
        for host in self.hosts.values():
            view = self.read(host)
            if not view.live or not any(n < view.live and not bad for n, (_, bad, _) in view.releases.items()):
                return False
        return True

    def unsound(self, views):
        """What a repair fixes: hosts that disagree, a current that is not a complete logged release,
        or hosts whose releases a rollback may go back to differ (so every rollback would refuse)."""
        lives = {v.live for v in views.values()}
        return len(lives) > 1 or len({frozenset(_good(v)) for v in views.values()}) > 1 or any(
            v.live is None or v.live not in v.releases or v.releases[v.live][0] is None
            or v.releases[v.live][0] != self.release_commit.get(v.live) for v in views.values())

    def even_out(self):
        """Same releases, same bad marks on every host: a release some host lacks goes, a bad mark spreads.

        Never the live release. Returns what it did, for the round's notes.
        """
        views = {n: self.read(h) for n, h in self.hosts.items()}
        common = set.intersection(*(set(v.releases) for v in views.values()))
        bad = {r for v in views.values() for r, (_, b, _) in v.releases.items() if b}
        done = []
        for name, view in views.items():
            doomed = [r for r in view.releases if r not in common and r != view.live]
            marks = [r for r in view.releases if r in bad and not view.releases[r][1] and r != view.live]
            script = [f"rm -rf -- {APP}/releases/{r}" for r in doomed]
            script += [f"touch {APP}/releases/{r}/{BAD_MARKER}" for r in marks]
            if script:
                self.hosts[name].sh(" && ".join(script))
                done.append(f"{name}: " + " ".join([f"-{r}" for r in doomed] + [f"bad:{r}" for r in marks]))
        return done

    def repair(self, round_no, rdir, found, after):
        """Put the fleet back to sound, so each violation belongs to one round: unlock, remove leftovers, redeploy.

        Also after a round that split the fleet and said so (no violation):
        the next round's rollback would only refuse.
        """
        self.repairs += 1
        notes = ["repaired"]
        if any(v.lock is not None for v in after.values()):
            run = self.fab("unlock", rdir, "repair-unlock")
            if run.exit != 0:
                raise Abort(f"round {round_no}: fab unlock failed while repairing:\n{run.stderr[-2000:]}")
            for name, host in self.hosts.items():
                if self.read(host).lock is not None:
                    raise Abort(f"round {round_no}: fab unlock left {name}'s deploy.lock in place")
        for name, view in after.items():
            doomed = [f"{APP}/releases/{h}" for h in view.hidden]
            doomed += [f"{APP}/{e}" for e in view.entries
                       if e == ".current.fake.tmp" or e.startswith((".fake-upload-", ".fake-checkout-", ".fake-archive"))]
            for v in found:
                m = re.match(r"half-made release (\d{14})", v.text)
                if v.host == name and m and m.group(1) != view.live:
                    doomed.append(f"{APP}/releases/{m.group(1)}")
            if doomed:
                self.hosts[name].sh("rm -rf -- " + " ".join(shlex.quote(d) for d in doomed))
        views = {n: self.read(h) for n, h in self.hosts.items()}
        broken = [n for n, v in views.items() if v.live is None or v.live not in v.releases
                  or v.releases[v.live][0] is None or v.releases[v.live][0] != self.release_commit.get(v.live)]
        split = len({v.live for v in views.values()}) > 1
        if broken or split:
            notes.append(f"current broken on {','.join(broken)}" if broken else
                          "hosts disagree: " + " ".join(f"{n}={v.live}" for n, v in views.items()))
            for attempt in range(2):
                run = self.fab("deploy", rdir, f"repair-deploy{attempt}")
                self.learn(run, round_no)
                if run.exit == 0:
                    notes.append("redeployed")
                    break
                self.fab("unlock", rdir, f"repair-unlock{attempt}")
            else:
                raise Abort(f"round {round_no}: the fleet could not be repaired:\n{run.stderr[-2000:]}")
        evened = self.even_out()
        if evened:
            notes.append("releases evened out (" + "; ".join(evened) + ")")
        return notes

    # -- records ---------------------------------------------------------------------
    def write_round(self, rdir, sched, runs, found, notes, effect):
        record = {"round": sched.round, "seed": sched.seed, "action": sched.action,
                  "fault": sched.fault.describe() if sched.fault else None, "took_effect": bool(effect),
                  "runs": [{"label": r.label, "task": r.task, "argv": r.argv, "pid": r.pid, "exit": r.exit,
                            "seconds": round(r.duration, 3), "release": r.release(),
                            "signals": [int(s) for s in r.signals]} for r in runs],
                  "violations": [v.__dict__ for v in found], "notes": notes}
        with open(self.work / "rounds.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if found or self.args.keep:
            (rdir / "round.json").write_text(json.dumps(record, indent=2) + "\n")

    def summary(self, argv, wall, aborted=None):
        by_inv = collections.Counter(v.invariant for v in self.violations)
        rt = self.round_times
        lines = ["# Fake chaos run", "", "`" + " ".join(["python bench/chaos.py", *argv]) + "`", ""]
        lines += [f"- {self.rounds_done} rounds ({', '.join(f'{a} {self.actions[a]}' for a in ACTIONS)}),"
                  f" {len(self.names)} hosts, seed {self.args.seed}, wall time {wall:.0f} s"
                  + (f"; round time mean {statistics.mean(rt):.2f} s, median {statistics.median(rt):.2f} s,"
                     f" max {max(rt):.2f} s (the fab runs alone: median {statistics.median(self.fab_times):.2f} s)"
                     if rt else ""),
                  f"- fleet repaired (unlock, leftovers removed, redeploy) after {self.repairs} round(s):"
                  f" each with violations, or with hosts left on different releases", ""]
        if aborted:
            lines += [f"**Stopped early:** {aborted}", ""]
        lines += ["| fault | scheduled | took effect |", "|---|---:|---:|"]
        for kind in FAULTS:
            if kind in self.args.kinds:
                lines.append(f"| {kind}: {FAULTS[kind]} | {self.faults_scheduled[kind]} | {self.faults_effective[kind]} |")
        none = self.rounds_done - sum(self.faults_scheduled.values())
        lines += [f"| (no fault) | {none} | |", ""]
        lines += ["| invariant | violations |", "|---|---:|"]
        for inv in (1, 2, 3, 4, 5, 6, 0):
            lines.append(f"| {inv}. {INVARIANTS[inv]} | {by_inv[inv]} |")
        lines.append("")
        if self.sigkill_reports:
            left = [r for r in self.sigkill_reports if r["lock_left"]]
            lines += [f"After a SIGKILL of the controller ({len(self.sigkill_reports)} rounds later recovered):"
                      f" a lock was left {len(left)} time(s); the next deploy's message named the dead run's pid"
                      f" {sum(r['pid_named'] for r in left)} time(s) and said it is dead/stale"
                      f" {sum(r['dead_said'] for r in left)} time(s)."]
            if left:
                lines.append(f"  e.g. `{left[0]['message'].strip()[:200]}`")
            lines.append("")
        if self.odd:
            lines += ["Other findings (not counted as violations):", ""]
            lines += [f"- {o}" for o in self.odd[:50]]
            lines.append("")
        if self.violations:
            classes = {}
            for v in self.violations:
                classes.setdefault(violation_class(v), []).append(v)
            lines += ["| violation class | count | first seen (replay: --seed S --first-round R --rounds 1) |",
                      "|---|---:|---|"]
            for klass, seen in sorted(classes.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
                lines.append(f"| [{klass[0]}] {klass[1]} | {len(seen)} | seed {seen[0].seed} round {seen[0].round} |")
            lines += ["", "Violations:", ""]
            lines += [f"- {v.line()}" for v in self.violations]
            lines.append("")
        return "\n".join(lines)


def violation_class(v):
    """(invariant, the violation's text without hosts, releases, commits and lock contents)."""
    text = re.sub(r"deploy\.lock left: (?!\(empty\)).*", "deploy.lock left", v.text)
    text = re.sub(r"\b\d{14}\b", "<release>", text)
    text = re.sub(r"\bweb\d+\b", "<host>", text)
    text = re.sub(r"\b[0-9a-f]{12,40}\b", "<commit>", text)
    text = re.sub(r"(<host>, )+<host>", "<hosts>", text)
    text = re.sub(r"\(.*?@[^)]*\)", "(...)", text)
    return v.invariant, text


def _good(view):
    """The releases a rollback may pick on a host: not marked bad."""
    return {r for r, (_, bad, _) in view.releases.items() if not bad}


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _table_row(line, host):
    return re.match(rf"^{re.escape(host)}\s+(ok|FAILED|not reached)\b", line) is not None


def _names_failed(stderr, host):
    """``[host] ...`` or the summary row ``host  FAILED``."""
    return f"[{host}]" in stderr or re.search(rf"^{re.escape(host)}\s+FAILED\b", stderr, re.M) is not None


def _names_with_release(stderr, host, live):
    """Whether some line says which release ``host`` has: ``live`` (a release name, or None for none).

    In the ways Fake states a host's release: ``host <release>`` side by
    side (the rollback refusal, the releases table's "hosts disagree"
    warning), or a line naming the host that says it "switched back to", "is
    on", "is left on", "is still on"... the release (as the note "web1:
    switched back to <release>"). Not a summary-table row: its release
    column is the run's target, and "ok" or "FAILED" there does not say the
    hosts differ. Nor an error line that merely contains the release, such
    as "[web2] ... connection lost while running 'remove unpublished release
    <release>'".
    """
    h = re.escape(host)
    rel = re.escape(live) if live else r"(none|no release|nothing|no current)"
    said = (r"(switched back to|is on|is still on|left on|still on|stays on|remains on|kept on|may be on"
            r"|might be on|may still be on|has live|live release is|live is)")
    patterns = [
        rf"(?<![\w-]){h}\]?:?\s[^\n]*\b{said} (release )?{rel}\b",
        rf"(?<![\w\[-]){h},? (has |on |at )?{rel}\b",
    ]
    for line in stderr.splitlines():
        if not _table_row(line, host) and any(re.search(p, line) for p in patterns):
            return True
    return False


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
    text = chaos.summary(argv, wall, aborted)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({
            "argv": argv, "rounds": chaos.rounds_done, "wall_s": round(wall, 1), "aborted": aborted,
            "faults_scheduled": dict(chaos.faults_scheduled), "faults_effective": dict(chaos.faults_effective),
            "violations": [v.__dict__ for v in chaos.violations],
            "violations_by_invariant": {str(k): c for k, c in
                                        collections.Counter(v.invariant for v in chaos.violations).items()},
            "sigkill_reports": chaos.sigkill_reports, "other_findings": chaos.odd, "evidence": chaos.evidence,
            "deploys": [{"round": r, "run": label, "release": name, "commit": sha}
                        for r, label, name, sha in chaos.deploy_log], "round_times": [round(t, 3) for t in chaos.round_times],
        }, indent=2) + "\n")
    if aborted:
        return 130 if aborted.startswith("interrupted") else 2
    return 1 if chaos.violations else 0


if __name__ == "__main__":
    sys.exit(main())
