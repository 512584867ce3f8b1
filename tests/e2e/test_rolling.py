"""Going live in batches: a canary, a health gate per batch, a failure budget, and @primary tasks.

Six real sshd hosts. Each logs every command it runs (start and end, with
the host's own clock, which all hosts share) through a ForceCommand
wrapper: order and overlap are read from those logs, never from the
controller's timing.
"""

import json
import re
import shlex
import signal
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import explain
from tests.e2e.sshd import Fleet, commit, make_repo
from tests.e2e.test_deploy import APP, live, ok
from tests.e2e.test_safety import no_lock_anywhere, popen

HOSTS = [f"web{i}" for i in range(1, 7)]
CMDLOG = "/srv/commands.log"

# Runs each SSH command after logging it: "start <ns> <command on one line>", then "end <ns> <exit>".
WRAPPER = r"""#!/bin/sh
printf 'start %s %s\n' "$(date +%s%N)" "$(printf '%s' "$SSH_ORIGINAL_COMMAND" | tr '\n' ' ')" >> /srv/commands.log
if [ -z "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/sh -l; fi
/bin/sh -c "$SSH_ORIGINAL_COMMAND"
fake_rc=$?
printf 'end %s %s\n' "$(date +%s%N)" "$fake_rc" >> /srv/commands.log
exit $fake_rc
"""

FABFILE = '''
from fake.api import env, primary, run, task, after
from fake.tasks.deploy import *

env.roledefs = {{
    'production': {{'hosts': {hosts!r}}},
    'db': {{'hosts': ['web5', 'web3']}},
}}
env.deploy_path = {app!r}
env.repo_url = {repo!r}
env.healthcheck = 'test ! -e /srv/sick  # HEALTH'
env.linked_files = ['config/app.ini']


@task
@primary
def migrate():
    run("test ! -e /srv/fail-migrate && echo migrated >> /srv/migrate.log")


@task
@primary('db')
def announce():
    run("echo announced >> /srv/announce.log")


after('updated', migrate)
after('published', announce)  # in the batches: still once per deploy
'''


@pytest.fixture
def fleet6(project):
    workdir = Path(tempfile.mkdtemp(prefix="fake-rolling-"))
    workdir.chmod(0o755)
    wrapper = workdir / "log-command"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    fleet = Fleet(6, workdir=workdir / "fleet", names=HOSTS, extra_config=[f"ForceCommand {wrapper}"],
                  sftp_subsystem="/usr/lib/openssh/sftp-server")
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def rolling(project, fleet6):
    repo = project / "repo"
    make_repo(repo)
    (project / "fabfile.py").write_text(FABFILE.format(hosts=HOSTS, app=APP, repo=str(repo)))
    for host in fleet6.hosts:
        host.sh(f"mkdir -p {APP}/shared/config && echo 'secret=1' > {APP}/shared/config/app.ini "
                f"&& touch {CMDLOG} && chown -R fake-test /srv")
    return fleet6, repo


def fab_deploy(fab, fleet, *settings, task="deploy", extra=()):
    args = ["--report", "report.json", *extra]
    if settings:
        args += ["--set", ",".join(settings)]
    return fab([*args, "-R", "production", task], fleet=fleet, timeout=120)


def commands(host):
    """[(start ns, end ns or None, command)] from the host's own log, in order."""
    out = []
    for line in host.sh(f"cat {CMDLOG}").splitlines():
        kind, stamp, rest = (line.split(" ", 2) + [""])[:3]
        if kind == "start":
            out.append([int(stamp), None, rest])
        elif kind == "end" and out and out[-1][1] is None:
            out[-1][1] = int(stamp)
    return out


def since(host, mark):
    return [c for c in commands(host) if c[0] > mark]


def switch(host, mark=0):
    found = [c for c in since(host, mark) if "mv -T" in c[2] and ".current.fake.tmp" in c[2]]
    return found[0] if found else None


def health(host, mark=0):
    found = [c for c in since(host, mark) if "# HEALTH" in c[2]]
    return found[0] if found else None


def clock(host):
    return int(host.sh("date +%s%N").strip())


def tree(host):
    """What current serves, file by file, and where it points."""
    return live(host), host.sh(f"cd {APP}/current/ && find . -type f -exec sha256sum {{}} + | sort")


def test_canary_then_batches_each_after_the_one_before_passed(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    counts_before = {h.name: len(commands(h)) for h in fleet.hosts}
    ok(fab_deploy(fab, fleet))  # all at once
    plain = {h.name: len(commands(h)) - counts_before[h.name] for h in fleet.hosts}
    counts_before = {h.name: len(commands(h)) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    mark = clock(fleet.hosts[0])
    proc = ok(fab_deploy(fab, fleet, "canary=1", "batch_size=2", "batch_wait=1"))
    batches = [["web1"], ["web2", "web3"], ["web4", "web5"], ["web6"]]
    for k, (done, nxt) in enumerate(zip(batches, batches[1:]), 1):
        passed = max(health(fleet[h], mark)[1] for h in done)
        first_switch = min(switch(fleet[h], mark)[0] for h in nxt)
        assert passed < first_switch, f"batch {k + 1} switched before batch {k}'s health check ended"
        assert first_switch - passed >= 1_000_000_000, f"batch_wait=1 not seen after batch {k}"
    assert "batch 1/4 (canary): web1 live, healthy" in proc.stdout, explain(proc)
    assert "batch 3/4: web4 web5 live, healthy" in proc.stdout, explain(proc)
    assert len({live(h) for h in fleet.hosts}) == 1 and live(fleet["web1"]) != ""
    # Commands per host: the same as an all-at-once deploy (4 + the health check + hooks).
    batched = {h.name: len(commands(h)) - counts_before[h.name] for h in fleet.hosts}
    assert batched == plain, (batched, plain)
    # @primary: migrate once per deploy on web1; announce (a published hook, so in the batches) once on web5.
    assert fleet["web1"].sh("cat /srv/migrate.log").split() == ["migrated"] * 3
    assert fleet["web5"].sh("cat /srv/announce.log").split() == ["announced"] * 3
    for host in fleet.hosts:
        if host.name != "web1":
            assert host.sh("test -e /srv/migrate.log && echo y || echo n").strip() == "n", host.name
        if host.name != "web5":
            assert host.sh("test -e /srv/announce.log && echo y || echo n").strip() == "n", host.name


def test_a_health_check_failing_in_batch_2_puts_every_host_back(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    before = {h.name: tree(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    fleet["web3"].sh("touch /srv/sick")
    mark = clock(fleet.hosts[0])
    proc = fab_deploy(fab, fleet, "canary=1", "batch_size=2", "max_fail=0")
    assert proc.returncode == 1, explain(proc)
    assert "batch 2/4" in proc.stderr and "web3" in proc.stderr and "max_fail=0" in proc.stderr, explain(proc)
    assert {h.name: tree(h) for h in fleet.hosts} == before
    new = [r for r in fleet["web1"].sh(f"ls {APP}/releases").split() if f"releases/{r}" != before["web1"][0]]
    assert len(new) == 1
    for name in ["web1", "web2", "web3"]:
        assert fleet[name].sh(f"test -e {APP}/releases/{new[0]}/.fake-bad && echo bad").strip() == "bad", name
    for name in ["web4", "web5", "web6"]:
        assert switch(fleet[name], mark) is None, f"{name} (batch 3+) switched"
    assert no_lock_anywhere(fleet)


def test_one_host_down_within_max_fail_the_others_go_live_exit_2(fab, project, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    down = fleet["web6"]
    kept = tree(down)
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    down.crash()
    try:
        proc = fab_deploy(fab, fleet, "max_fail=1", "batch_size=2")
    finally:
        down.restart()
    assert proc.returncode == 2, explain(proc)
    assert "web6" in proc.stderr, explain(proc)
    lives = {live(h) for h in fleet.hosts if h is not down}
    assert len(lives) == 1 and lives != {kept[0]}
    assert tree(down) == kept
    report = json.loads((project / "report.json").read_text())
    assert report["exit"] == 2 and report["hosts"]["web6"]["outcome"] == "failed", report
    assert "web6" in report["failed_within_max_fail"], report
    assert no_lock_anywhere(fleet)


def test_two_hosts_down_with_max_fail_1_change_nothing(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    before = {h.name: (tree(h), h.sh(f"ls {APP}/releases")) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    fleet["web5"].crash()
    fleet["web6"].crash()
    try:
        proc = fab_deploy(fab, fleet, "max_fail=1")
    finally:
        fleet["web5"].restart()
        fleet["web6"].restart()
    assert proc.returncode == 1, explain(proc)
    assert "web5" in proc.stderr and "web6" in proc.stderr, explain(proc)
    assert {h.name: (tree(h), h.sh(f"ls {APP}/releases")) for h in fleet.hosts} == before
    assert no_lock_anywhere(fleet)


def test_a_host_failing_its_health_check_in_the_last_batch_goes_back_alone(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    old = live(fleet["web6"])
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    fleet["web6"].sh("touch /srv/sick")
    proc = fab_deploy(fab, fleet, "canary=1", "batch_size=2", "max_fail=1")
    assert proc.returncode == 2, explain(proc)
    assert live(fleet["web6"]) == old
    lives = {live(h) for h in fleet.hosts if h.name != "web6"}
    assert len(lives) == 1 and lives != {old}
    assert "web6: switched back to" in proc.stderr, explain(proc)
    assert "switched back" in fleet["web6"].sh(f"tail -n 1 {APP}/revisions.log")
    assert no_lock_anywhere(fleet)


def test_ctrl_c_during_batch_wait_reverts_and_stops(fab, project, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    before = {h.name: tree(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    mark = clock(fleet.hosts[0])
    proc = popen(project, fleet, "--set", "canary=1,batch_wait=30", "-R", "production", "deploy")
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("batch 1/2"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert "no further batch goes live" in err, err
    assert {h.name: tree(h) for h in fleet.hosts} == before
    for host in fleet.hosts[1:]:
        assert switch(host, mark) is None, host.name
    assert no_lock_anywhere(fleet)


def test_dry_run_lists_the_batches_and_the_primary_hosts(fab, rolling):
    fleet, _ = rolling
    proc = ok(fab_deploy(fab, fleet, "canary=1", "batch_size=40%", extra=["--dry-run"]))
    assert "batch 1/4 (canary): web1" in proc.stdout, explain(proc)
    assert "batch 2/4: web2 web3" in proc.stdout and "batch 4/4: web6" in proc.stdout, explain(proc)
    assert "once per deploy: migrate on web1" in proc.stdout, explain(proc)
    assert "once per deploy: announce on web5" in proc.stdout, explain(proc)


def test_a_rollback_goes_back_in_the_same_batches(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    old = live(fleet["web1"])
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(fab_deploy(fab, fleet))
    mark = clock(fleet.hosts[0])
    proc = ok(fab_deploy(fab, fleet, "canary=1", "batch_size=3", task="rollback"))
    assert "batch 1/3 (canary): web1 live" in proc.stdout and "batch 3/3: web5 web6 live" in proc.stdout, \
        explain(proc)
    batches = [["web1"], ["web2", "web3", "web4"], ["web5", "web6"]]
    for done, nxt in zip(batches, batches[1:]):
        assert max(switch(fleet[h], mark)[1] for h in done) < min(switch(fleet[h], mark)[0] for h in nxt)
    assert {live(h) for h in fleet.hosts} == {old}


def test_primary_runs_once_in_each_deploy_of_one_command_line(fab, rolling):
    fleet, repo = rolling
    proc = ok(fab(["--set", "canary=1,batch_size=2", "-R", "production", "deploy", "deploy"], fleet=fleet,
                  timeout=120))
    assert fleet["web1"].sh("cat /srv/migrate.log").split() == ["migrated"] * 2, explain(proc)
    assert fleet["web5"].sh("cat /srv/announce.log").split() == ["announced"] * 2, explain(proc)


def test_a_failed_primary_task_fails_the_deploy_whatever_max_fail(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    before = {h.name: tree(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    fleet["web1"].sh("touch /srv/fail-migrate")
    proc = fab_deploy(fab, fleet, "max_fail=3")
    assert proc.returncode == 1, explain(proc)
    assert "migrate (@primary) runs once per deploy" in proc.stderr and "[web1]" in proc.stderr, explain(proc)
    assert {h.name: tree(h) for h in fleet.hosts} == before
    assert no_lock_anywhere(fleet)


def test_a_host_another_run_holds_is_left_alone_within_max_fail(fab, rolling):
    fleet, repo = rolling
    ok(fab_deploy(fab, fleet))
    held = fleet["web6"]
    lock = '{"user": "alice", "from": "elsewhere", "pid": 7, "task": "deploy", "token": "abc123", "since": 1}'
    held.sh(f"printf '%s\\n' {shlex.quote(lock)} > {APP}/deploy.lock")
    kept = tree(held)
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = fab_deploy(fab, fleet, "max_fail=1")
    assert proc.returncode == 2, explain(proc)
    assert "web6: dropped at deploy:check" in proc.stderr and "alice@elsewhere" in proc.stderr, explain(proc)
    assert tree(held) == kept and "alice" in held.sh(f"cat {APP}/deploy.lock")
    assert len({live(h) for h in fleet.hosts if h is not held}) == 1
