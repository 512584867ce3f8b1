"""Benchmark: what ``call(fn)`` costs per call, next to ``run()``, on a real sshd host.

    sudo .venv/bin/python bench/call.py                 # one-way delays 0 and 25 ms, 200 calls each
    sudo .venv/bin/python bench/call.py --delays 0,50 --calls 500

For each one-way delay D (through bench/proxy.py; D = 0 connects directly)
one host is started (tests/e2e/sshd.py) and the real ``fab`` runs a task
that times, inside the task: the first ``call()`` (starting the host's
interpreter), then ``--calls`` calls of a small function, the same number
of ``run('true')``, and calls sending 1 MB each way. It prints one table;
with D > 0, ``call / RTT`` near 1 shows that a call after the first costs
one round trip. The host's command log (a ForceCommand wrapper) and sshd's
log give the commands and connections the task cost.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.sshd import Fleet  # noqa: E402

FABFILE = """
import json, os, statistics, time
from fake.api import call, run, task

def echo(data):
    return data

def timed(fn, n):
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), statistics.mean(times)

@task
def measure(c, calls=200):
    calls = int(calls)
    started = time.perf_counter()
    call(os.getpid)
    first = time.perf_counter() - started
    call_median, call_mean = timed(lambda: call(os.getpid), calls)
    run_median, run_mean = timed(lambda: run("true", hide=True), calls)
    blob = os.urandom(1 << 20)
    mb_median, _ = timed(lambda: call(echo, blob), 10)
    print("RESULT", json.dumps(dict(first=first, call_median=call_median, call_mean=call_mean,
                                    run_median=run_median, run_mean=run_mean, mb_median=mb_median)))
"""

LOGGER = """#!/bin/sh
printf '%s\\n' "$SSH_ORIGINAL_COMMAND" | head -n 1 | cut -c1-60 >> {log}
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


def cell(delay_ms, calls, workdir):
    log = workdir / f"commands-{delay_ms}.log"
    log.write_text("")
    log.chmod(0o666)
    wrapper = workdir / f"wrapper-{delay_ms}.sh"
    wrapper.write_text(LOGGER.format(log=log))
    wrapper.chmod(0o755)
    fleet = Fleet(1, workdir=workdir / f"fleet-{delay_ms}", names=["far"],
                  extra_config=[f"ForceCommand {wrapper}"])
    proxy = None
    try:
        ssh_config = fleet.ssh_config_path
        if delay_ms:
            proxy = subprocess.Popen([sys.executable, str(ROOT / "bench" / "proxy.py"), "--delay-ms",
                                      str(delay_ms), str(fleet.hosts[0].port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            ports = {int(k): v for k, v in json.loads(proxy.stdout.readline()).items()}
            ssh_config = fleet.write_ssh_config(workdir / f"ssh_config-{delay_ms}",
                                                ports={"far": ports[fleet.hosts[0].port]})
        fab = Path(sys.executable).parent / "fab"
        proc = subprocess.run([str(fab), "-S", str(ssh_config), "-H", "far", "measure", "--calls", str(calls)],
                              cwd=workdir, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"fab failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        line = next(ln for ln in proc.stdout.splitlines() if "RESULT" in ln)
        result = json.loads(line.split("RESULT", 1)[1])
        commands = log.read_text().splitlines()
        result["commands"] = len(commands)
        result["interpreters"] = sum(1 for c in commands if " -c " in c)
        result["connections"] = fleet.hosts[0].accepted_count()
        return result
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        fleet.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0,25", help="one-way delays in ms, comma-separated")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fake-bench-call-", dir="/var/tmp"))
    workdir.chmod(0o755)
    (workdir / "fabfile.py").write_text(textwrap.dedent(FABFILE))
    rows = []
    try:
        for delay in (int(d) for d in args.delays.split(",")):
            r = cell(delay, args.calls, workdir)
            rtt = 2 * delay / 1000
            rows.append(
                f"| {delay} ms | {r['first'] * 1000:.1f} | {r['call_median'] * 1000:.2f} | "
                f"{r['run_median'] * 1000:.2f} | {r['mb_median'] * 1000:.1f} | "
                f"{(r['call_median'] / rtt) if rtt else float('nan'):.2f} | "
                f"{r['commands']} ({r['interpreters']} interpreter) | {r['connections']} |")
    finally:
        subprocess.run(["rm", "-rf", str(workdir)])
    print(f"call() round trips, {args.calls} calls per cell (median ms; 1 MB: 1 MB sent and returned)\n")
    print("| one-way delay | first call (starts Python) | call | run('true') | call 1 MB | call / RTT "
          "| host commands | SSH connections |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("needs root (real sshd hosts), like the end-to-end tests")
    main()
