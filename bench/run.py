"""Benchmark Fake against Capistrano on real sshd test hosts.

    python bench/run.py [--hosts 1,5,20] [--delays 0,25] [--runs 3]
                        [--tools fake,capistrano,floor] [--quick] [--keep]

For every cell (N hosts, one-way delay D ms) each tool gets its own fresh
fleet of N sshd hosts (tests/e2e/sshd.py), one warm-up deploy, --runs timed
deploys and a timed rollback, interleaved between the tools run by run.
Every run is verified on every host.  Each sshd runs every command through a
logging ForceCommand wrapper, so remote commands are counted exactly; SSH
connections are counted from sshd's "Accepted publickey" lines.  With D > 0
clients connect through bench/proxy.py.  Results: a markdown table on stdout
and in bench/results/latest.md, details in bench/results/latest.json.
The "floor" tool is Fake with a strategy that does no git work: how much of
a deploy's time, at each fleet size, is not the code's way onto the hosts.

Needs root (sshd, mount namespaces), like the end-to-end tests.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.sshd import TEST_USER, Fleet, _chown_tree, _git, commit, ensure_test_user, make_repo  # noqa: E402

APP = "/srv/app"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_TIMEOUT = 600
PROXY_NICE = -10
TOOLS = ("fake", "before", "capistrano", "floor")
COMPARED = ("fake", "capistrano")  # the main table; "floor" is context for the scaling target
LABEL = {"fake": "Fake", "before": "Fake before", "capistrano": "Capistrano", "floor": "Fake floor"}
BEFORE_FAB = None  # --before-fab: the fab of another Fake checkout, measured in the same run as "before"

# Runs as the login user for every SSH command: one log record, then the command.
# The wrapper is measurement, not deployment, so it is made as cheap as it can
# be: dash and builtins only (no bash, no date; the stamp is /proc/uptime, in
# 10 ms steps), and the command runs in the wrapper's own shell with eval
# rather than a third shell. A record starts a line with "@<uptime> ".
WRAPPER = r"""#!/bin/sh
# ForceCommand for benchmark hosts: log the command, then run it as sshd would.
read fake_up fake_idle < /proc/uptime
fake_log=$1
set --
printf '@%s %s\n' "$fake_up" "$SSH_ORIGINAL_COMMAND" >> "$fake_log"
if [ -z "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/sh -l; fi
eval "$SSH_ORIGINAL_COMMAND"
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# -- the sample application -----------------------------------------------------
WORDS = ("alpha beta gamma delta deploy release shared current rollback symlink "
         "server host branch commit mirror archive linked config upload session "
         "worker queue cache token render template static asset module handler").split()


def sample_files(seed=20261122):
    """A few hundred text and binary files, a few MB, the same every time."""
    rng = random.Random(seed)
    files = {}
    for i in range(240):
        folder = ("app", "lib", "app/models", "app/views", "config/locales", "docs")[i % 6]
        lines = []
        for _ in range(rng.randint(40, 300)):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))))
        files[f"{folder}/file_{i:03d}.txt"] = "\n".join(lines) + "\n"
    for i in range(60):
        folder = ("public/images", "public/fonts", "vendor/blobs")[i % 3]
        files[f"{folder}/blob_{i:03d}.bin"] = rng.randbytes(rng.randint(16, 64) * 1024)
    files["README"] = "Sample application for Fake's benchmark.\n"
    files["VERSION"] = "0\n"
    return files


class SampleRepo:
    def __init__(self, path):
        self.path = path
        self.count = 0
        make_repo(path)
        files = sample_files()
        self.head = commit(path, files, "sample application")
        # Packed, as a repository that has been pushed to or cloned from is;
        # a fresh `git init` leaves every object loose, which no real
        # repository a fleet deploys from looks like. Both tools read it.
        _git(path, "gc", "--quiet")
        _chown_tree(path, ensure_test_user())
        self.size = sum(len(v) for v in files.values())
        self.nfiles = len(files) + 2  # plus make_repo's app.py and static/.keep

    def new_commit(self):
        """A small change, as a real deploy would ship; returns the sha."""
        self.count += 1
        k = self.count
        self.head = commit(self.path, {
            "VERSION": f"{k}\n",
            f"app/changes_{k % 7}.txt": f"change {k}\n" * (k % 50 + 1),
        }, f"change {k}")
        return self.head


# -- running a tool --------------------------------------------------------------
def busy_seconds():
    """CPU seconds this machine has spent busy (all CPUs, all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_child(argv, cwd, env, out_path, timeout=RUN_TIMEOUT):
    """Run argv; return (exit code, wall s, max RSS KB, epoch start, CPU s, machine CPU s).

    The RSS is ru_maxrss from wait4: the child's own peak (or that of a
    descendant it waited for, if larger). Machine CPU is what every
    process spent meanwhile: the tool, the sshd hosts and what they ran,
    the proxy; all of them share this machine's cores.
    """
    with open(out_path, "ab") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        epoch = time.time()
        start = time.monotonic()
        busy = busy_seconds()
        proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        reaped = threading.Event()

        def kill():
            if not reaped.is_set():
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # e.g. Ctrl-C: do not leave the tool running
            timer.cancel()
            kill()
            reaped.set()
            proc.wait()
            raise
        finally:
            reaped.set()
            timer.cancel()
        wall = time.monotonic() - start
        busy = busy_seconds() - busy
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.write(f"# exit {proc.returncode}, {wall:.3f} s, maxrss {usage.ru_maxrss} KB\n\n".encode())
    return proc.returncode, wall, usage.ru_maxrss, epoch, usage.ru_utime + usage.ru_stime, busy


def child_env(home):
    return {"PATH": CHILD_PATH, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "USER": "root", "LOGNAME": "root", "TERM": "dumb"}


def fab_program():
    local = ROOT / ".venv" / "bin" / "fab"
    return local if local.exists() else Path(sys.executable).parent / "fab"


class Tool:
    name = None

    def __init__(self, workdir, fleet, ports, repo):
        self.dir = workdir
        self.fleet = fleet
        self.ports = ports          # host name -> port the client connects to
        self.repo = repo
        self.home = workdir / "home"
        self.home.mkdir(parents=True)
        self.out = workdir / "output.log"
        self.deployed = []          # shas, one per deploy (warm-up included)

    def run(self, action):
        return run_child(self.argv(action), self.dir, child_env(self.home), self.out)


class FakeTool(Tool):
    name = "fake"
    template = "fabfile.py.tmpl"

    def setup(self):
        hosts = [h.name for h in self.fleet.hosts]
        template = string.Template((BENCH / "fake" / self.template).read_text())
        (self.dir / "fabfile.py").write_text(template.substitute(
            hosts=repr(hosts), repo_url=str(self.repo.path)))
        self.ssh_config = self.fleet.write_ssh_config(self.dir / "ssh_config", ports=self.ports)

    settings = ""  # --fab-set: e.g. canary=1,batch_size=2 (going live in batches)

    def argv(self, action):
        extra = ["--set", self.settings] if self.settings else []
        return [fab_program(), "-S", self.ssh_config, *extra, "-R", "bench", action]


class CapTool(Tool):
    name = "capistrano"
    stage = "bench"

    def setup(self):
        deploy_dir = self.dir / "config" / "deploy"
        deploy_dir.mkdir(parents=True)
        shutil.copyfile(BENCH / "capistrano" / "Capfile", self.dir / "Capfile")
        tmpl = string.Template((BENCH / "capistrano" / "deploy.rb.tmpl").read_text())
        (self.dir / "config" / "deploy.rb").write_text(tmpl.substitute(repo_url=str(self.repo.path)))
        servers = "\n".join(
            f"server \"127.0.0.1\", port: {self.ports[h.name]}, user: \"{TEST_USER}\", "
            f"roles: %w[app], ssh_options: bench_ssh"
            for h in self.fleet.hosts)
        tmpl = string.Template((BENCH / "capistrano" / "stage.rb.tmpl").read_text())
        (deploy_dir / f"{self.stage}.rb").write_text(tmpl.substitute(
            stage=self.stage, key=str(self.fleet.key_path), servers=servers))

    def argv(self, action):
        return ["cap", self.stage, {"deploy": "deploy", "rollback": "deploy:rollback"}[action]]


class BeforeTool(FakeTool):
    """Fake from another checkout (``--before-fab``): before and after a change, in one run."""
    name = "before"

    def argv(self, action):
        return [BEFORE_FAB, *super().argv(action)[1:]]


class FloorTool(FakeTool):
    """Fake with a strategy that does no work: what the rest of a deploy costs here."""
    name = "floor"
    template = "floor.py.tmpl"


TOOL_CLASSES = {"fake": FakeTool, "before": BeforeTool, "capistrano": CapTool, "floor": FloorTool}


# -- hosts --------------------------------------------------------------------------
def start_fleet(n, workdir, wrapper, logdir):
    def force_command(host):
        return [f"ForceCommand {wrapper} {logdir}/{host.name}.log"]

    for attempt in range(1, 4):
        # The harness picks free ports and sshd binds them a moment later; another
        # process (a test run, an outgoing connection) can take one in between.
        # Then sshd exits, and the harness may even have seen another server's
        # banner on that port. So check that every sshd bound its own port, and
        # else start afresh in a new directory.
        try:
            fleet = Fleet(n, workdir=workdir.with_name(f"{workdir.name}-{attempt}"),
                          extra_config=force_command, sftp_subsystem=SFTP_SERVER)
        except (RuntimeError, TimeoutError) as e:
            log(f"  fleet of {n} did not start (attempt {attempt}): {str(e).splitlines()[0]}")
            if attempt == 3:
                raise
            continue
        bad = [h.name for h in fleet.hosts if h.proc.poll() is not None
               or f"Server listening on 127.0.0.1 port {h.port}." not in h.log_text()]
        if not bad:
            break
        fleet.close()
        log(f"  fleet of {n}: sshd of {', '.join(bad)} did not get its port (attempt {attempt})")
        if attempt == 3:
            raise RuntimeError(f"sshd hosts {bad} could not bind their ports")
    try:
        for host in fleet.hosts:
            host.sh(f"mkdir -p {APP}/shared/config && echo 'secret=1' > {APP}/shared/config/app.ini"
                    f" && chown -R {TEST_USER}: /srv")
    except BaseException:
        fleet.close()
        raise
    return fleet


def command_records(logdir, host):
    """[(epoch time, command)] in the order the host's wrapper logged them."""
    try:
        text = (logdir / f"{host.name}.log").read_text(errors="replace")
    except FileNotFoundError:
        return []
    with open("/proc/uptime") as f:
        offset = time.time() - float(f.read().split()[0])
    records = []
    for line in text.split("\n"):
        stamp, _, command = line.partition(" ")
        if stamp.startswith("@"):
            try:
                records.append([float(stamp[1:]) + offset, command])
                continue
            except ValueError:
                pass
        if records:  # a later line of a multi-line command
            records[-1][1] += "\n" + line
    return [(t, c.rstrip("\n")) for t, c in records]


def counters(fleet, logdir):
    return {h.name: (len(command_records(logdir, h)), h.accepted_count()) for h in fleet.hosts}


def command_times(fleet, logdir, before):
    """Epoch times of the commands logged on all hosts since ``before``."""
    return [t for host in fleet.hosts for t, _ in command_records(logdir, host)[before[host.name][0]:]]


def verify(fleet, sha):
    """Problems with the live release on each host ([] if all is well)."""
    problems = []
    for host in fleet.hosts:
        out = host.sh(f"cd {APP} && echo \"link $(readlink current)\" && "
                      f"echo \"rev $(cat current/REVISION)\" && echo \"ini $(cat current/config/app.ini)\"",
                      check=False)
        seen = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        link, rev, ini = seen.get("link", ""), seen.get("rev", "").strip('"'), seen.get("ini", "")
        if "releases/" not in link:
            problems.append(f"{host.name}: current -> {link!r}")
        elif rev != sha:
            problems.append(f"{host.name}: current is {link} with REVISION {rev[:12] or '(none)'}, "
                            f"expected {sha[:12]}")
        elif ini != "secret=1":
            problems.append(f"{host.name}: current/config/app.ini reads {ini!r}")
    return problems


# -- the delay ----------------------------------------------------------------------
class Proxy:
    def __init__(self, ports, delay_ms, out_path):
        self.out = open(out_path, "ab")
        # The proxy stands for the network, and a network does not slow down
        # when the hosts are busy: run it ahead of the hosts and the tools
        # (nice -10; root may), so a saturated machine does not add to D.
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "proxy.py"), "--delay-ms", str(delay_ms), *map(str, ports)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.out,
            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, PROXY_NICE))
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"proxy did not start; see {out_path}")
        self.map = {int(k): v for k, v in json.loads(line).items()}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def ssh_true_ms(key, port, tries=3):
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-p", str(port), f"{TEST_USER}@127.0.0.1", "true"]
    times = []
    for _ in range(tries):
        start = time.monotonic()
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
        times.append((time.monotonic() - start) * 1000)
    return statistics.median(times)


# -- one cell -----------------------------------------------------------------------
def run_cell(n, delay, tools, runs, root, wrapper, repo, samples):
    """Both tools on fresh fleets, interleaved run by run; returns (records, delay check)."""
    pw = ensure_test_user()
    cell_dir = root / f"n{n}-d{delay}"
    cell_dir.mkdir()
    fleets, logdirs, proxy, delay_check = {}, {}, None, None
    records = {t: [] for t in tools}
    try:
        for tool in tools:
            logdir = cell_dir / tool / "cmdlogs"
            logdir.mkdir(parents=True)
            os.chown(logdir, pw.pw_uid, pw.pw_gid)
            logdirs[tool] = logdir
            fleets[tool] = start_fleet(n, cell_dir / tool / "fleet", wrapper, logdir)
        direct = {t: {h.name: h.port for h in f.hosts} for t, f in fleets.items()}
        ports = direct
        if delay > 0:
            all_ports = [p for m in direct.values() for p in m.values()]
            proxy = Proxy(all_ports, delay, cell_dir / "proxy.log")
            ports = {t: {name: proxy.map[p] for name, p in m.items()} for t, m in direct.items()}
            first = fleets[tools[0]].hosts[0]
            base = ssh_true_ms(fleets[tools[0]].key_path, first.port)
            via = ssh_true_ms(fleets[tools[0]].key_path, ports[tools[0]][first.name])
            rtts = (via - base) / (2 * delay)
            delay_check = {"delay_ms": delay, "ssh_true_direct_ms": round(base, 1),
                           "ssh_true_proxied_ms": round(via, 1), "extra_rtts": round(rtts, 2),
                           "ok": rtts >= 3}
            log(f"  delay check: ssh true {base:.0f} ms direct, {via:.0f} ms via proxy "
                f"= +{via - base:.0f} ms = {rtts:.1f} x 2D")
        drivers = {}
        for tool in tools:
            driver = TOOL_CLASSES[tool](cell_dir / tool / "project", fleets[tool], ports[tool], repo)
            driver.setup()
            drivers[tool] = driver

        plan = [("warmup", 0)] + [("deploy", i) for i in range(1, runs + 1)] + [("rollback", 0)]
        for kind, index in plan:
            for tool in tools:
                driver, fleet = drivers[tool], fleets[tool]
                if kind != "warmup" and not any(r["kind"] == "warmup" and r["ok"] for r in records[tool]):
                    continue  # nothing to measure on a fleet that never got a release
                if kind == "rollback":
                    action = "rollback"
                    expected = driver.deployed[-2] if len(driver.deployed) >= 2 else None
                else:
                    action = "deploy"
                    expected = repo.new_commit()
                    driver.deployed.append(expected)
                before = counters(fleet, logdirs[tool])
                code, wall, rss, epoch, cpu, busy = driver.run(action)
                after = counters(fleet, logdirs[tool])
                stamps = command_times(fleet, logdirs[tool], before)
                problems = []
                if code != 0:
                    problems.append(f"{LABEL[tool]} exited {code}; see {driver.out}")
                problems += verify(fleet, expected) if expected else ["no earlier deploy to roll back to"]
                cmds = [after[h][0] - before[h][0] for h in after]
                conns = [after[h][1] - before[h][1] for h in after]
                rec = {"kind": kind, "index": index, "wall_s": round(wall, 3), "exit": code,
                       "ok": not problems, "problems": problems[:5],
                       "cmds_max": max(cmds), "cmds_mean": round(statistics.mean(cmds), 2),
                       "cmds_min": min(cmds), "conns_max": max(conns), "conns_min": min(conns),
                       "maxrss_mb": round(rss / 1024, 1), "cpu_s": round(cpu, 3),
                       "machine_cpu_s": round(busy, 3)}
                if stamps:  # when the first and the last remote command started, from the tool's start
                    rec["first_cmd_s"] = round(min(stamps) - epoch, 3)
                    rec["last_cmd_s"] = round(max(stamps) - epoch, 3)
                if not problems:
                    del rec["problems"]
                records[tool].append(rec)
                status = "ok" if rec["ok"] else "FAILED: " + "; ".join(problems[:2])
                span = (f"  cmds at {rec['first_cmd_s']:.2f}..{rec['last_cmd_s']:.2f} s"
                        if "first_cmd_s" in rec else "")
                log(f"  {LABEL[tool]:<11} {kind:<8} {wall:6.2f} s  cmds/host {min(cmds)}-{max(cmds)}  "
                    f"conns/host {min(conns)}-{max(conns)}  {rss / 1024:5.1f} MB  cpu {cpu:4.2f} s{span}  {status}")
                if kind in ("deploy", "rollback") and tool not in samples.get(kind, {}):
                    first = fleet.hosts[0]
                    logged = command_records(logdirs[tool], first)[before[first.name][0]:]
                    samples.setdefault(kind, {})[tool] = {
                        "cell": f"{n} hosts, D={delay}",
                        "commands": [command.replace("\n", "\\n")[:100] for _, command in logged]}
        return records, delay_check
    finally:
        if proxy is not None:
            proxy.stop()
        for fleet in fleets.values():
            fleet.close()


# -- summary ------------------------------------------------------------------------
def summarize(records):
    timed = [r for r in records if r["kind"] == "deploy"]
    rollbacks = [r for r in records if r["kind"] == "rollback"]
    if not records:
        return None
    s = {"runs": len(records), "all_ok": all(r["ok"] for r in records)}
    s["deploy_ok"] = bool(timed) and all(r["ok"] for r in timed)
    s["deploy_median_s"] = round(statistics.median(r["wall_s"] for r in timed), 3) if timed else None
    s["deploy_times_s"] = [r["wall_s"] for r in timed]
    warm = [r for r in records if r["kind"] == "warmup"]
    s["warmup_s"] = warm[0]["wall_s"] if warm else None
    s["warmup_ok"] = bool(warm) and warm[0]["ok"]
    s["rollback_ok"] = bool(rollbacks) and all(r["ok"] for r in rollbacks)
    s["rollback_s"] = rollbacks[0]["wall_s"] if rollbacks else None
    if timed:
        s["deploy_cmds_max"] = max(r["cmds_max"] for r in timed)
        s["deploy_cmds_mean"] = round(statistics.mean(r["cmds_mean"] for r in timed), 2)
    if warm:
        s["warmup_cmds_max"] = warm[0]["cmds_max"]
    if rollbacks:
        s["rollback_cmds_max"] = max(r["cmds_max"] for r in rollbacks)
        s["rollback_cmds_mean"] = round(statistics.mean(r["cmds_mean"] for r in rollbacks), 2)
    s["conns_min"] = min(r["conns_min"] for r in records)
    s["conns_max"] = max(r["conns_max"] for r in records)
    s["peak_mb"] = max(r["maxrss_mb"] for r in records)
    # What a deploy costs is measured on the verified ones: a run that failed early (a connect
    # step that gave up, say) spent little and would pull the median down.
    measured = [r for r in timed if r["ok"]] or timed
    if timed:
        s["deploy_cpu_runs"] = len(measured)
        s["deploy_cpu_median_s"] = round(statistics.median(r["cpu_s"] for r in measured), 3)
        s["deploy_machine_cpu_median_s"] = round(statistics.median(r.get("machine_cpu_s", 0) for r in measured), 3)
        for key in ("first_cmd_s", "last_cmd_s"):
            values = [r[key] for r in measured if key in r]
            if values:
                s[f"deploy_{key.replace('_s', '')}_median_s"] = round(statistics.median(values), 3)
    return s


def fmt_time(s, ok):
    if s is None:
        return "–"
    return f"{s:.2f}" if ok else f"FAILED ({s:.2f})"


def fmt_cmds(mx, mean):
    if mx is None:
        return "–"
    return f"{mx}" if float(mean) == mx else f"{mx} (mean {mean:g})"


def fmt_conns(s):
    return f"{s['conns_min']}" if s["conns_min"] == s["conns_max"] else f"{s['conns_min']}–{s['conns_max']}"


def table(cells, tools):
    tools = [t for t in tools if t in COMPARED]
    head = ["hosts", "D ms"]
    for t in tools:
        L = LABEL[t]
        head += [f"{L} deploy s", f"{L} rollback s", f"{L} cmds/host deploy", f"{L} cmds/host rollback",
                 f"{L} conns/host", f"{L} peak MB"]
    if set(COMPARED) <= set(tools):
        head.append("Fake/Cap deploy")
    rows = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for cell in cells:
        row = [str(cell["hosts"]), str(cell["delay_ms"])]
        for t in tools:
            s = cell["tools"].get(t)
            if not s:
                row += ["–"] * 6
                continue
            row += [fmt_time(s["deploy_median_s"], s["deploy_ok"]),
                    fmt_time(s["rollback_s"], s["rollback_ok"]),
                    fmt_cmds(s.get("deploy_cmds_max"), s.get("deploy_cmds_mean")),
                    fmt_cmds(s.get("rollback_cmds_max"), s.get("rollback_cmds_mean")),
                    fmt_conns(s), f"{s['peak_mb']:.0f}"]
        if set(COMPARED) <= set(tools):
            f, c = cell["tools"].get("fake"), cell["tools"].get("capistrano")
            if f and c and f["deploy_ok"] and c["deploy_ok"]:
                row.append(f"{f['deploy_median_s'] / c['deploy_median_s']:.2f}")
            else:
                row.append("–")
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def detail_table(cells, tools):
    """Where a deploy's time goes: start-up and connecting, remote commands, controller CPU."""
    rows = ["| hosts | D ms | tool | warm-up deploy s | deploy: 1st remote cmd at s | last remote cmd at s"
            " | controller CPU s | machine CPU s |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for cell in cells:
        for t in tools:
            s = cell["tools"].get(t)
            if not s or s.get("deploy_median_s") is None:
                continue

            def num(key):
                return f"{s[key]:.2f}" if s.get(key) is not None else "–"

            rows.append(f"| {cell['hosts']} | {cell['delay_ms']} | {LABEL[t]} | {num('warmup_s')} | "
                        f"{num('deploy_first_cmd_median_s')} | {num('deploy_last_cmd_median_s')} | "
                        f"{num('deploy_cpu_median_s')} | {num('deploy_machine_cpu_median_s')} |")
    return "\n".join(rows)


def per_host_table(cells, tools):
    """What each host costs the controller: CPU and memory per host, and launch to first command."""
    rows = ["| hosts | D ms | tool | deploy s | controller CPU s | CPU/host ms | peak MB | MB/host"
            " | launch to 1st remote cmd s | last remote cmd s | conns/host |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cell in cells:
        n = cell["hosts"]
        for t in tools:
            s = cell["tools"].get(t)
            if not s or s.get("deploy_median_s") is None or s.get("deploy_cpu_median_s") is None:
                continue

            def num(key, scale=1.0, fmt="{:.2f}"):
                return fmt.format(s[key] * scale) if s.get(key) is not None else "–"

            cpu = num('deploy_cpu_median_s')
            if not s["deploy_ok"] and s.get("deploy_cpu_runs") is not None:
                cpu += f" ({s['deploy_cpu_runs']} verified of {len(s['deploy_times_s'])})"
            rows.append(f"| {n} | {cell['delay_ms']} | {LABEL[t]} | {fmt_time(s['deploy_median_s'], s['deploy_ok'])} | "
                        f"{cpu} | {num('deploy_cpu_median_s', 1000 / n, '{:.1f}')} | "
                        f"{s['peak_mb']:.0f} | {s['peak_mb'] / n:.2f} | {num('deploy_first_cmd_median_s')} | "
                        f"{num('deploy_last_cmd_median_s')} | {fmt_conns(s)} |")
    return "\n".join(rows)


def targets(cells):
    """The goals for Fake, each as (ok or None when not measured, text)."""
    by = {(c["hosts"], c["delay_ms"]): c["tools"] for c in cells}
    fake = [c["tools"]["fake"] for c in cells if c["tools"].get("fake")]
    out = []

    def line(ok, text):
        out.append((ok, text))

    if fake:
        dmax = max(s.get("deploy_cmds_max", 0) for s in fake)
        rmax = max(s.get("rollback_cmds_max", 0) for s in fake)
        line(dmax <= 6, f"Fake deploy <= 6 commands/host: max {dmax}")
        line(rmax <= 4, f"Fake rollback <= 4 commands/host: max {rmax}")
        cmin, cmax = min(s["conns_min"] for s in fake), max(s["conns_max"] for s in fake)
        line(cmin == cmax == 1, f"Fake: exactly 1 SSH connection per host per run: {cmin}–{cmax}")
        line(all(s["all_ok"] for s in fake), "Fake: every run verified on every host")
    else:
        line(None, "Fake not measured")

    def get(n, d, tool):
        s = by.get((n, d), {}).get(tool)
        return s["deploy_median_s"] if s and s["deploy_ok"] else None

    f20, c20, f1, c1 = get(20, 25, "fake"), get(20, 25, "capistrano"), get(1, 25, "fake"), get(1, 25, "capistrano")
    if f20 is not None and c20 is not None:
        line(f20 <= c20 / 3, f"20 hosts D=25: Fake {f20:.2f} s <= 1/3 of Capistrano's {c20:.2f} s ({c20 / 3:.2f} s)")
    else:
        line(None, "20 hosts D=25 vs Capistrano: not measured (or failed)")
    if f20 is not None and f1 is not None:
        busy = by[(20, 25)]["fake"].get("deploy_machine_cpu_median_s")
        why = (f"; the 20-host deploy kept this machine's {os.cpu_count()} cores busy for {busy:.2f} CPU-s"
               if busy else "")
        line(f20 <= 1.5 * f1, f"20 hosts D=25: Fake {f20:.2f} s <= 1.5 x its 1-host D=25 time ({1.5 * f1:.2f} s){why}")
    else:
        line(None, "20 hosts D=25 vs 1 host D=25: not measured (or failed)")
    if f1 is not None and c1 is not None:
        line(f1 <= c1 / 3, f"1 host D=25: Fake {f1:.2f} s <= 1/3 of Capistrano's {c1:.2f} s ({c1 / 3:.2f} s)")
    else:
        line(None, "1 host D=25 vs Capistrano: not measured (or failed)")
    peaks = [c["tools"]["fake"]["peak_mb"] for c in cells if c["hosts"] == 20 and c["tools"].get("fake")]
    if peaks:
        line(max(peaks) < 80, f"Fake peak memory at 20 hosts < 80 MB: {max(peaks):.1f} MB")
    else:
        line(None, "Fake peak memory at 20 hosts: not measured")
    return out


def floor_lines(cells):
    """What the floor runs say about the scaling target (context, not a target)."""
    by = {(c["hosts"], c["delay_ms"]): c["tools"] for c in cells}

    def get(n, d, tool):
        s = by.get((n, d), {}).get(tool)
        return s["deploy_median_s"] if s and s["deploy_ok"] else None

    out = []
    for d in sorted({c["delay_ms"] for c in cells}):
        f1, f20, fake1, fake20 = get(1, d, "floor"), get(20, d, "floor"), get(1, d, "fake"), get(20, d, "fake")
        if f1 is None or f20 is None:
            continue
        text = (f"D={d}: the floor deploy (no git work on any host) takes {f1:.2f} s on 1 host and {f20:.2f} s"
                f" on 20, {f20 / f1:.2f} x")
        if fake1 is not None and fake20 is not None:
            text += (f"; Fake's real deploy adds {fake1 - f1:+.2f} s on 1 host and {fake20 - f20:+.2f} s on 20"
                     f" ({fake20 / fake1:.2f} x)")
        out.append(text)
    return out


# -- the machine ----------------------------------------------------------------------
def _out(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           env=child_env(tempfile.gettempdir()))
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def machine(tools):
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    fab = fab_program()
    versions = _out([fab.parent / "python", "-c",
                     "import sys, importlib.metadata as m; print(sys.version.split()[0]); "
                     "print(*[m.version(p) for p in ('fake', 'fabric', 'paramiko', 'invoke')])"]).split("\n")
    info = {
        "nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "kernel": platform.release(),
        "python": versions[0] if versions else "?",
        "openssh": _out(["ssh", "-V"]), "git": _out(["git", "--version"]).replace("git version ", ""),
        "fab": str(fab),
        "fake_checkout": _out(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }
    if BEFORE_FAB is not None:
        info["before_fab"] = str(BEFORE_FAB)
        info["before_version"] = _out([BEFORE_FAB, "--version"]).split("\n")[0]
    if len(versions) > 1 and len(versions[1].split()) == 4:
        info.update(zip(("fake", "fabric", "paramiko", "invoke"), versions[1].split()))
    if "capistrano" in tools:
        info["capistrano"] = _out(["cap", "--version"]).replace("Capistrano Version: ", "")
        info["ruby"] = _out(["ruby", "-e", "print RUBY_VERSION"])
        for pkg in ("ruby-net-ssh", "ruby-sshkit", "ruby-airbrussh"):
            info[pkg] = _out(["dpkg-query", "-W", "-f", "${Version}", pkg])
    return info


def machine_lines(info):
    out = [f"- machine: {info['nproc']} cores ({info['cpu']}), Linux {info['kernel']}, "
           f"{info['openssh']}, git {info['git']}",
           f"- Fake {info.get('fake', '?')}, Fabric {info.get('fabric', '?')}, Paramiko {info.get('paramiko', '?')}, "
           f"Invoke {info.get('invoke', '?')}, Python {info['python']} ({info['fab']}; checkout {info['fake_checkout']})"]
    if "before_fab" in info:
        out.append(f"- Fake before: {info['before_fab']} ({info['before_version']})")
    if "capistrano" in info:
        out.append(f"- Capistrano {info['capistrano']}, Ruby {info['ruby']}, net-ssh {info['ruby-net-ssh']}, "
                   f"sshkit {info['ruby-sshkit']}, airbrussh {info['ruby-airbrussh']} (Debian packages)")
    return out


def ensure_capistrano():
    if shutil.which("cap"):
        return True
    policy = subprocess.run(["apt-cache", "policy", "capistrano"], capture_output=True, text=True)
    log(policy.stdout.strip() or policy.stderr.strip())
    if "Candidate: (none)" in policy.stdout or "capistrano:" not in policy.stdout:
        log("capistrano is not available from apt; run apt-get update first")
        return False
    log("installing capistrano with apt-get ...")
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "capistrano"], capture_output=True, text=True,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if proc.returncode != 0:
        log(proc.stdout[-2000:] + proc.stderr[-2000:])
    return shutil.which("cap") is not None


def compact_json(obj, depth=0, flat_at=4):
    """JSON with one line per item below ``flat_at`` levels: small and still readable."""
    if depth >= flat_at or not isinstance(obj, (dict, list)) or not obj:
        return json.dumps(obj, separators=(", ", ": "))
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(str(k))}: {compact_json(v, depth + 1, flat_at)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{compact_json(v, depth + 1, flat_at)}" for v in obj]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


# -- main -------------------------------------------------------------------------------
def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark Fake against Capistrano on real sshd hosts.")
    parser.add_argument("--hosts", type=int_list, default=[1, 5, 20], help="fleet sizes (default 1,5,20)")
    parser.add_argument("--delays", type=int_list, default=[0, 25], help="one-way delays in ms (default 0,25)")
    parser.add_argument("--runs", type=int, default=3, help="timed deploys per cell and tool (default 3)")
    parser.add_argument("--tools", default="fake,capistrano,floor",
                        help="fake,before,capistrano,floor (default fake,capistrano,floor; floor is Fake with"
                             " no git work, before is --before-fab)")
    parser.add_argument("--before-fab", type=Path,
                        help="with --tools before: the fab of another Fake install (e.g. the last release)")
    parser.add_argument("--quick", action="store_true", help="hosts 1,5, delays 0,25, 2 runs")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, fleets' files)")
    parser.add_argument("--fab-set", default="", metavar="SETTINGS",
                        help="--set for Fake's fab, e.g. canary=1,batch_size=25%%,batch_wait=0 (batches)")
    args = parser.parse_args(argv)
    FakeTool.settings = args.fab_set
    if args.quick:
        args.hosts, args.delays, args.runs = [1, 5], [0, 25], 2
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(tools) - set(TOOLS)
    if unknown or not tools:
        parser.error(f"--tools takes {','.join(TOOLS)}; got {args.tools!r}")
    tools = [t for t in TOOLS if t in tools]  # always fake first, then cap, then the floor
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if "before" in tools:
        if not args.before_fab or not args.before_fab.exists():
            parser.error("--tools before needs --before-fab PATH to an existing fab")
        global BEFORE_FAB
        BEFORE_FAB = args.before_fab.resolve()
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root: it starts sshd hosts in their own mount namespaces")
    if "capistrano" in tools and not ensure_capistrano():
        sys.exit("cap not found and could not be installed; use --tools fake")

    started = time.monotonic()
    info = machine(tools)
    for line in machine_lines(info):
        log(line)
    pw = ensure_test_user()
    root = Path(tempfile.mkdtemp(prefix="fake-bench-"))
    root.chmod(0o755)
    cells, samples, delay_checks = [], {}, []
    try:
        wrapper = root / "log-command"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        repo = SampleRepo(root / "repo")
        log(f"sample repo: {repo.nfiles} files, {repo.size / 1e6:.1f} MB, in {repo.path}")
        for n in args.hosts:
            for delay in args.delays:
                log(f"== {n} host(s), D = {delay} ms")
                records, check = run_cell(n, delay, tools, args.runs, root, wrapper, repo, samples)
                if check:
                    delay_checks.append(check)
                cells.append({"hosts": n, "delay_ms": delay,
                              "tools": {t: summarize(records[t]) for t in tools},
                              "runs": records})
    finally:
        if args.keep:
            log(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    total = time.monotonic() - started
    del pw

    goals = targets(cells) if "fake" in tools else []
    md = ["# Fake vs Capistrano: deploy benchmark", ""]
    md += ["`" + " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])]) + "`", ""]
    md += machine_lines(info)
    md += [f"- sample app: {repo.nfiles} files, {repo.size / 1e6:.1f} MB; a new commit before every deploy",
           f"- per cell and tool: fresh fleet, 1 warm-up deploy, {args.runs} timed deploys (median), 1 rollback;"
           " tools interleaved run by run; every run verified on every host",
           "- cmds/host: remote commands per host per run (max over hosts and runs, mean if different);"
           " conns/host: SSH connections per host per run; peak MB: max RSS of the `fab`/`cap` process",
           f"- total runtime {total:.0f} s", ""]
    md += [table(cells, tools), ""]
    md += ["Medians over the timed deploys; times from the tool's start; machine CPU is every process's"
           " (tool, hosts, proxy) while the tool ran:", "", detail_table(cells, tools), ""]
    md += ["Per host: the tool's own CPU (user + system) and peak RSS divided by the hosts, and when the"
           " first and the last remote command started, from the tool's launch (CPU and command times"
           " from the verified deploys when some failed):", "",
           per_host_table(cells, tools), ""]
    if delay_checks:
        md += ["Delay check (`ssh true`, median of 3): " + "; ".join(
            f"D={c['delay_ms']}: {c['ssh_true_direct_ms']:.0f} ms direct, {c['ssh_true_proxied_ms']:.0f} ms proxied"
            f" (+{c['extra_rtts']:.1f} x 2D)" for c in delay_checks), ""]
    if goals:
        md += ["Targets for Fake:", ""]
        md += [f"- {'PASS' if ok else ('n/a ' if ok is None else 'FAIL')} {text}" for ok, text in goals]
        md.append("")
    floor = floor_lines(cells)
    if floor:
        md += ["The floor, for the scaling target: Fake's deploy with a strategy that does no work"
               " (`bench/fake/floor.py.tmpl`: no fetch, no export; the same probe, lock, links, switch and"
               " clean-up). Every host shares this machine's cores, so this is the least a 20-host deploy"
               " costs here:", ""]
        md += [f"- {text}" for text in floor]
        md.append("")
    failures = [(c["hosts"], c["delay_ms"], t, r) for c in cells for t in tools for r in c["runs"][t] if not r["ok"]]
    if failures:
        md += ["Failed runs:", ""]
        md += [f"- {LABEL[t]} {n} hosts D={d} {r['kind']} {r['index']}: {'; '.join(r.get('problems', []))}"
               for n, d, t, r in failures[:20]]
        md.append("")
    text = "\n".join(md)
    print(text)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    result = {"argv": argv if argv is not None else sys.argv[1:], "machine": info, "total_s": round(total, 1),
              "sample_repo": {"files": repo.nfiles, "bytes": repo.size}, "runs_per_cell": args.runs,
              "delay_checks": delay_checks, "cells": cells,
              "targets": [{"ok": ok, "text": text} for ok, text in goals], "floor": floor,
              "command_samples": samples}
    (args.out / "latest.json").write_text(compact_json(result) + "\n")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
