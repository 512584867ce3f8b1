"""One ``fab`` process of a round, and what it says it did.

The harness starts, signals and kills runs only through FabRun, which keeps
every live one in the harness's ``live_runs`` (by PID) so the exit path can
stop them all.
"""

import json
import os
import re
import signal
import subprocess
import time

from .fixture import CHILD_PATH


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
