"""call(fn): Python functions on real sshd hosts, through the real ``fab``.

The hosts here log every command sshd runs for them (a ForceCommand
wrapper writes one line per command into a log outside the host's view),
so a test can count interpreter starts from the host's side.
"""

import re
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import explain
from tests.e2e.sshd import TEST_HOME, Fleet, ensure_test_user

LOGGER = """#!/bin/sh
printf '%s\\n' "$SSH_ORIGINAL_COMMAND" | head -n 1 | cut -c1-100 >> {log}
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


class LoggedFleet(Fleet):
    """Hosts web1..web3 whose commands are logged; their files live outside /tmp (hosts may hide /tmp)."""

    def __init__(self, n=3):
        self.logdir = Path(tempfile.mkdtemp(prefix="fake-call-", dir="/var/tmp"))
        self.logdir.chmod(0o755)
        names = [f"web{i}" for i in range(1, n + 1)]
        for name in names:
            log = self.logdir / f"{name}.log"
            log.write_text("")
            log.chmod(0o666)
            script = self.logdir / f"{name}.sh"
            script.write_text(LOGGER.format(log=log))
            script.chmod(0o755)
        super().__init__(n, workdir=self.logdir / "fleet", names=names,
                         extra_config=lambda host: [f"ForceCommand {self.logdir}/{host.name}.sh"])
        for host in self.hosts:
            host.sh(f"echo {host.name} > /srv/name")

    def commands(self, name):
        return (self.logdir / f"{name}.log").read_text().splitlines()

    def close(self):
        try:
            super().close()
        finally:
            shutil.rmtree(self.logdir, ignore_errors=True)


@pytest.fixture
def fleet():
    hosts = LoggedFleet()
    try:
        yield hosts
    finally:
        hosts.close()


def write(project, name, text):
    (project / name).write_text(textwrap.dedent(text))


FABFILE = """
    import platform
    import sys
    from fake.api import call, env, execute, task

    def say(*words):  # one write per line: hosts print from their own threads
        sys.stdout.write(" ".join(map(str, words)) + "\\n")

    def whoami(suffix):
        import helpers  # lives beside the fabfile, installed nowhere
        return helpers.host_name() + suffix, helpers.__name__

    def fail_on_web2():
        print("checking", open("/srv/name").read().strip())
        if open("/srv/name").read().strip() == "web2":
            raise ValueError("bad")
        return "fine"

    @task
    def node(c):
        import helpers
        say(env.host, "NODE", call(platform.node))
        say(env.host, "WHO", call(whoami, "!"))
        say(env.host, "DIRECT", call(helpers.host_name))

    @task
    def fifty(c):
        import paramiko
        counts = {"sent": 0, "opened": 0}
        sendall, open_session = paramiko.Channel.sendall, paramiko.Transport.open_session

        def counting_sendall(self, data):
            counts["sent"] += 1
            return sendall(self, data)

        def counting_open(self, *args, **kwargs):
            counts["opened"] += 1
            return open_session(self, *args, **kwargs)

        values = {call(platform.python_version)}  # the first starts the interpreter
        paramiko.Channel.sendall, paramiko.Transport.open_session = counting_sendall, counting_open
        values |= {call(platform.python_version) for _ in range(49)}
        say(env.host, "FIFTY", len(values), "SENT", counts["sent"], "OPENED", counts["opened"])

    @task
    def fragile(c):
        say("GOT", call(fail_on_web2))

    @task
    def collect(c):
        results = execute(fragile, hosts=["web1", "web2", "web3"], warn_only=True)
        print("SUCCESSFUL", sorted(results.successful()))
        print("FAILED", {h: str(e) for h, e in results.failures().items()})
"""

HELPERS = """
    def host_name():
        with open("/srv/name") as f:
            return f.read().strip()
"""


def listing(host):
    return host.sh(f"find /tmp {TEST_HOME} /srv -xdev | sort")


def test_call_returns_each_hosts_value_and_leaves_no_file(fleet, fab, project):
    pw = ensure_test_user()
    for host in fleet.hosts:  # a /tmp and a home of the host's own, so a listing sees only its files
        host.sh(f"mount -t tmpfs -o mode=1777 tmpfs /tmp && "
                f"mount -t tmpfs -o mode=0755,uid={pw.pw_uid},gid={pw.pw_gid} tmpfs {TEST_HOME}")
    write(project, "fabfile.py", FABFILE)
    write(project, "helpers.py", HELPERS)
    before = {h.name: listing(h) for h in fleet.hosts}
    proc = fab(["-H", "web1,web2,web3", "node"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    import platform
    for host in fleet.hosts:
        assert f"{host.name} NODE {platform.node()}" in proc.stdout, explain(proc)
        assert f"{host.name} WHO ('{host.name}!', 'helpers')" in proc.stdout, explain(proc)
        assert f"{host.name} DIRECT {host.name}" in proc.stdout, explain(proc)
        assert listing(host) == before[host.name], host.name  # nothing written on the host
        # one interpreter, started over the task's one connection
        assert [c for c in fleet.commands(host.name) if "-c" in c] == [fleet.commands(host.name)[0]]
        assert host.accepted_count() == 1


def test_fifty_calls_start_one_interpreter_on_one_connection(fleet, fab, project):
    write(project, "fabfile.py", FABFILE)
    proc = fab(["-H", "web1", "fifty"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    # after the first, each call is one message out (then its answer): no channel opened, nothing more sent
    assert "web1 FIFTY 1 SENT 49 OPENED 0" in proc.stdout, explain(proc)
    commands = fleet.commands("web1")
    assert len(commands) == 1 and commands[0].startswith("python3 -c "), commands
    assert fleet["web1"].accepted_count() == 1


def test_an_exception_names_host_function_and_error_and_warn_only_collects(fleet, fab, project):
    write(project, "fabfile.py", FABFILE)
    proc = fab(["-H", "web1,web2,web3", "fragile"], fleet=fleet)
    assert proc.returncode == 1, explain(proc)
    assert "[web2] call(fail_on_web2) raised ValueError: bad" in proc.stderr, explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    for name in ("web1", "web2", "web3"):  # what the function prints is prefixed by its host
        assert f"[{name}] checking {name}" in proc.stdout, explain(proc)
    # the remote traceback, under --debug only
    proc = fab(["--debug", "-H", "web2", "fragile"], fleet=fleet)
    assert 'line' in proc.stderr and "in fail_on_web2" in proc.stderr, explain(proc)
    assert 'raise ValueError("bad")' in proc.stderr, explain(proc)
    # the collecting form
    proc = fab(["collect"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    assert "SUCCESSFUL ['web1', 'web3']" in proc.stdout, explain(proc)
    assert "FAILED {'web2': '[web2] call(fail_on_web2) raised ValueError: bad'}" in proc.stdout, explain(proc)


PICKLE_FABFILE = """
    import os
    from fake.api import call, task

    @task
    def probe(c):
        print("VALUE", call(os.getcwd))
"""


@pytest.mark.parametrize("payload", [
    # a pickle that would create the marker if the controller unpickled it
    "pickle",
    # Fake's magic, then a frame announced at 4 GiB
    "oversized",
    # a frame of the right size whose value is a pickle, not a tag
    "garbled",
])
def test_a_host_sending_a_crafted_stream_fails_the_call_and_runs_nothing(fleet, fab, project, payload):
    import pickle
    import struct

    guard = Path(tempfile.mkdtemp(prefix="fake-marker-"))  # 0700 root: only the controller could write here
    marker = guard / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os_system, (f"touch {marker}",))

    from os import system as os_system
    evil = pickle.dumps(Exploit())
    # The payload is live: unpickled here, it would run a command on the controller.
    probe = guard / "probe"
    pickle.loads(evil.replace(str(marker).encode(), str(probe).encode().ljust(len(str(marker)))))
    assert probe.exists()
    data = {
        "pickle": evil,
        "oversized": b"\xfaK" + struct.pack(">I", 0xFFFFFFFF) + evil,
        "garbled": b"\xfaK" + struct.pack(">I", len(evil)) + evil,
    }[payload]
    host = fleet["web1"]
    host.sh("cat > /srv/payload && printf '#!/bin/sh\\ncat /srv/payload\\nsleep 1\\n' > /srv/python3 "
            "&& chmod 755 /srv/python3")
    Path(fleet.logdir / "payload").write_bytes(data)
    host.sh(f"cp {fleet.logdir}/payload /srv/payload")
    write(project, "fabfile.py", PICKLE_FABFILE)
    try:
        proc = fab(["-H", "web1", "--set", "python=/srv/python3", "probe"], fleet=fleet)
        assert proc.returncode == 1, explain(proc)
        assert "[web1] '/srv/python3' on the host answered with data that is not Fake's protocol" in proc.stderr, \
            explain(proc)
        assert "VALUE" not in proc.stdout and "Traceback" not in proc.stderr, explain(proc)
        assert not marker.exists()
    finally:
        shutil.rmtree(guard, ignore_errors=True)


def hide_python(host, workdir):
    """This host's /usr/bin without python3: links to everything else, bound over it in its namespace."""
    real, farm = workdir / "realbin", workdir / "bin"
    real.mkdir()
    farm.mkdir()
    for entry in Path("/usr/bin").iterdir():
        if not entry.name.startswith("python3"):
            (farm / entry.name).symlink_to(real / entry.name)
    host.sh(f"mount --bind /usr/bin {real} && mount --bind {farm} /usr/bin")


def test_a_host_without_python_is_one_line_naming_it(fleet, fab, project):
    hide_python(fleet["web3"], fleet.logdir)
    assert fleet["web3"].sh("PATH=/usr/bin:/bin; command -v python3 || echo none").strip() == "none"
    write(project, "fabfile.py", FABFILE)
    write(project, "helpers.py", HELPERS)
    proc = fab(["-H", "web1,web3", "node"], fleet=fleet)
    assert proc.returncode == 1, explain(proc)
    assert "[web3] cannot start Python: 'python3' was not found on the host" in proc.stderr, explain(proc)
    assert "web1 NODE" in proc.stdout, explain(proc)  # the other host is not held back
    assert "Traceback" not in proc.stderr, explain(proc)
    assert len([line for line in proc.stderr.splitlines() if "web3" in line and "python3" in line]) == 1, \
        explain(proc)


FREE_FABFILE = """
    from fake.api import env, run, task

    def mark(event):
        run(f"echo {event} $(date +%s%N) >> /srv/events")

    @task
    def a(c):
        if env.host == "web1":
            run("sleep 2")
        mark("a")

    @task
    def b(c):
        mark("b")
"""


def events(host):
    """{event: nanoseconds} from the host's own log (all hosts share this machine's clock)."""
    return {name: int(stamp) for name, stamp in (line.split() for line in host.sh("cat /srv/events").splitlines())}


@pytest.mark.parametrize("strategy", ["free", None])
def test_strategy_free_lets_fast_hosts_run_ahead(fleet, fab, project, strategy):
    write(project, "fabfile.py", FREE_FABFILE)
    args = ["-H", "web1,web2,web3", "a", "b"]
    proc = fab((["--strategy", strategy] if strategy else []) + args, fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    slow = events(fleet["web1"])
    assert slow["a"] < slow["b"]  # a host's own tasks stay in order
    for name in ("web2", "web3"):
        fast = events(fleet[name])
        assert fast["a"] < fast["b"]
        if strategy == "free":
            assert fast["b"] < slow["a"], (name, fast, slow)  # done with b before web1 is done with a
        else:
            assert fast["b"] > slow["a"], (name, fast, slow)  # b waits for every host's a


def test_strategy_free_keeps_a_flows_barrier_and_refuses_unknown_names(fleet, fab, project):
    write(project, "fabfile.py", FREE_FABFILE + """
    from fake.api import flow

    @flow("a", "b")
    def both():
        "a then b, as a flow"
    """)
    proc = fab(["--strategy", "free", "-H", "web1,web2", "both"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    assert events(fleet["web2"])["b"] > events(fleet["web1"])["a"]  # the flow's stages kept their barrier
    proc = fab(["--strategy", "fast", "-H", "web1", "a"], fleet=fleet)
    assert proc.returncode == 1 and "--strategy wants one of linear, free, got 'fast'" in proc.stderr, explain(proc)


def test_a_failure_under_free_stops_that_host_only(fleet, fab, project):
    write(project, "fabfile.py", FREE_FABFILE.replace('run("sleep 2")', 'run("exit 3")'))
    proc = fab(["--strategy", "free", "-H", "web1,web2,web3", "a", "b"], fleet=fleet)
    assert proc.returncode == 1, explain(proc)
    assert "[web1] exit 3 exited 3" in proc.stderr, explain(proc)
    assert fleet["web1"].sh("cat /srv/events 2>/dev/null || true") == ""  # web1 stopped at its failure
    for name in ("web2", "web3"):
        assert set(events(fleet[name])) == {"a", "b"}


CHECKS_FABFILE = """
    from fake.api import env
    from fake.tasks.deploy import *
    from fake.tasks.checks import *

    env.deploy_path = "/srv/app"
    env.repo_url = {repo!r}
    {settings}
"""


def test_preflight_checks_stop_a_deploy_before_anything_changes(fleet, fab, project):
    from tests.e2e.sshd import make_repo

    make_repo(project / "repo")
    listening, free = fleet["web1"].port, fleet["web2"].port + 20000  # an sshd's port; one nobody uses

    def deploy(settings):
        write(project, "fabfile.py", CHECKS_FABFILE.format(repo=str(project / "repo"), settings=settings))
        return fab(["-H", "web1,web2", "deploy"], fleet=fleet)

    proc = deploy(f"env.check_disk_free = '1T'\n    env.check_python = '3.6'\n"
                  f"    env.check_ports_listening = [{listening}]")
    assert proc.returncode == 1, explain(proc)
    line = re.search(r"\[(web., web.)\] preflight check failed: check_disk_free: \S+ free under /srv/app, "
                     r"1\.0T needed", proc.stderr)  # the same reason on both: one line naming both
    assert line and sorted(line.group(1).split(", ")) == ["web1", "web2"], explain(proc)
    for name in ("web1", "web2"):
        assert fleet[name].sh("ls -A /srv") == "name\n"  # no release, no lock, nothing
    proc = deploy(f"env.check_python = '99.1'")
    assert "check_python: Python 3." in proc.stderr and "is older than 99.1" in proc.stderr, explain(proc)
    proc = deploy(f"env.check_ports_free = [{listening}]")
    assert f"check_ports_free: something listens on port {listening}" in proc.stderr, explain(proc)
    proc = deploy(f"env.check_disk_free = '1M'\n    env.check_python = '3.6'\n"
                  f"    env.check_ports_listening = [{listening}]\n    env.check_ports_free = [{free}]")
    assert proc.returncode == 0, explain(proc)
    for name in ("web1", "web2"):
        assert fleet[name].sh("readlink /srv/app/current").startswith("releases/")
    # on their own, with what each host has
    proc = fab(["-H", "web1", "checks"], fleet=fleet)
    assert proc.returncode == 0 and re.search(r"python 3\.\d+\.\d+, \S+ free under /srv/app, port", proc.stdout), \
        explain(proc)
