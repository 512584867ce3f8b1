"""Fleet safety: every failure leaves every reachable host as it was, and says so."""

import os
import random
import re
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import default_sigint, explain, fab_bin
from tests.e2e.sshd import commit
from tests.e2e.test_cli import _interrupt_when
from tests.e2e.test_deploy import APP, app, deploy, live, ok, releases, repo, snapshot  # noqa: F401

LOCK = f"{APP}/deploy.lock"


def popen(project, fleet, *args, env=None):
    return subprocess.Popen([str(fab_bin), "-S", str(fleet.ssh_config_path), *args], cwd=project,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, preexec_fn=default_sigint)


def marker(host, path):
    return host.sh(f"test -e {path} && echo y || echo n").strip() == "y"


def no_lock_anywhere(fleet):
    return all(not marker(h, LOCK) for h in fleet.hosts)


def sabotage_hook(name, stage, body):
    """A fabfile hook that misbehaves only when BREAK=<name> is in the environment."""
    return f'''
import os

@task
def {name}():
    if os.environ.get("BREAK") == "{name}":
        {body}

after({stage}, {name})
'''


# -- health gate and publish failures -----------------------------------------------------------
def test_failed_health_check_switches_every_host_back(fab, app, repo):
    fleet = app(extra='''
        import os
        env.healthcheck = 'test ! -e /srv/unhealthy || { echo "app says bad"; exit 1; }'
        @task
        def notify():
            run("echo failed-hook-ran >> /srv/notify.log")
        after(failed, notify)
    ''')
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    good = {h.name: live(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    fleet["db1"].sh("touch /srv/unhealthy")  # only db1's check fails
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0, explain(proc)
    assert "[db1] health check" in proc.stderr and "app says bad" in proc.stderr, explain(proc)
    assert "Traceback" not in proc.stderr
    for host in fleet.hosts:
        assert live(host) == good[host.name], host.name
        bad = releases(host)[-1]
        assert marker(host, f"{APP}/releases/{bad}/.fake-bad"), "the failed release is marked bad"
        assert f"Release {bad} was switched back to" in host.sh(f"cat {APP}/revisions.log")
        assert "failed-hook-ran" in host.sh("cat /srv/notify.log"), "after(failed, ...) ran"
        assert f"{host.name}:" in proc.stderr and "switched back to" in proc.stderr
    assert no_lock_anywhere(fleet)
    # A rollback never lands on the bad release.
    ok(deploy(fab, fleet, "rollback"))
    for host in fleet.hosts:
        assert live(host) != f"releases/{releases(host)[-1]}"


def test_switch_failing_on_one_host_puts_the_others_back(fab, app, repo):
    fleet = app(extra='''
        import os
        @task
        def sabotage():
            # db1's current becomes a real directory: mv -T cannot replace it.
            if os.environ.get("BREAK") and env.host_string == "db1":
                run("rm /srv/app/current && mkdir -p /srv/app/current/keep")
        before(publishing, sabotage)
    ''')
    ok(deploy(fab, fleet, "deploy"))
    before = {h.name: live(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = fab(["-R", "production", "deploy"], fleet=fleet, env={"BREAK": "1"})
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    for name in ("web1", "web2"):
        assert live(fleet[name]) == before[name], name
        assert re.search(rf"^{name}\s+ok\b", proc.stderr, re.M), explain(proc)
        assert f"{name}: switched back to" in proc.stderr, explain(proc)
    assert len(releases(fleet["db1"])) == 1, "db1's unpublished release was removed"
    assert no_lock_anywhere(fleet)


# -- the lock -------------------------------------------------------------------------------------
def test_two_deploys_started_together_never_both_win(fab, project, app, repo):
    # Each holds its locks a second in `started`, so the two always overlap.
    fleet = app(extra=sabotage_hook("hold", "started", "__import__('time').sleep(1)"))
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    a = popen(project, fleet, "-R", "production", "deploy", env={"BREAK": "hold"})
    b = popen(project, fleet, "-R", "production", "deploy", env={"BREAK": "hold"})
    out_a, err_a = a.communicate(timeout=60)
    out_b, err_b = b.communicate(timeout=60)
    wins = [p.returncode == 0 for p in (a, b)]
    assert wins.count(True) <= 1, f"both won:\n{err_a}\n{err_b}"
    for err, won in ((err_a, wins[0]), (err_b, wins[1])):
        if not won:
            assert "is locked by" in err or "could not take the deploy lock" in err, err
    lives = {live(h) for h in fleet.hosts}
    assert len(lives) == 1, lives
    assert no_lock_anywhere(fleet)
    for host in fleet.hosts:
        assert len(releases(host)) == 1 + wins.count(True), "no partial release left behind"
        assert live(host) == f"releases/{releases(host)[-1]}"


def test_a_deploy_removes_only_its_own_lock(project, app, repo):
    fleet = app(extra=sabotage_hook("slow", "updated", 'run("touch /srv/slow; sleep 1")'))
    proc = popen(project, fleet, "-R", "production", "deploy", env={"BREAK": "slow"})
    deadline = time.monotonic() + 20
    while not all(marker(h, "/srv/slow") for h in fleet.hosts):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    foreign = '{"user": "bob", "from": "ci", "pid": 7, "since": 1, "task": "deploy", "token": "not-yours"}'
    fleet["web2"].sh(f"echo '{foreign}' > {LOCK}")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "not-yours" in fleet["web2"].sh(f"cat {LOCK}"), "another deploy's lock is left alone"
    assert not marker(fleet["web1"], LOCK) and not marker(fleet["db1"], LOCK)


# -- rollback consistency and cleanup -----------------------------------------------------------------
def test_rollback_refuses_when_hosts_disagree_unless_forced(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    ok(deploy(fab, fleet, "deploy"))
    r1, r2, r3 = releases(fleet["web1"])
    fleet["web2"].sh(f"ln -sfn releases/{r2} {APP}/current")
    before = {h.name: snapshot(h) for h in fleet.hosts}
    proc = deploy(fab, fleet, "rollback")
    assert proc.returncode != 0, explain(proc)
    assert "refusing to roll back" in proc.stderr and f"web2 {r2}" in proc.stderr and f"web1 {r3}" in proc.stderr
    assert "--force" in proc.stderr
    assert {h.name: snapshot(h) for h in fleet.hosts} == before
    ok(deploy(fab, fleet, "rollback", "--force"))
    assert live(fleet["web1"]) == f"releases/{r2}" and live(fleet["web2"]) == f"releases/{r1}"


def test_cleanup_spares_other_hosts_live_release_and_foreign_names(fab, app, repo):
    fleet = app(extra="env.keep_releases = 1\n")
    ok(deploy(fab, fleet, "deploy"))
    first = releases(fleet["web1"])[0]
    for host in fleet.hosts:
        host.sh(f"mkdir {APP}/releases/notes {APP}/releases/2026 && chown -R fake-test /srv")
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        rels = releases(host)
        assert "notes" in rels and "2026" in rels, "names not like a release are never removed"
        # keep_releases = 1 alone would remove it; it was live on some host when the deploy began.
        assert first in rels, "a release live on a host of this run is spared by this cleanup"
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        assert first not in releases(host), "once no host has it live, cleanup removes it"


# -- faults ------------------------------------------------------------------------------------------
def test_host_dying_mid_deploy_leaves_the_others_unchanged(fab, project, app, repo):
    fleet = app(extra=sabotage_hook("hang_on_web2", "updating",
                                    'run("touch /srv/mid; sleep 5") if env.host_string == "web2" else None'))
    ok(deploy(fab, fleet, "deploy"))
    before = {h.name: snapshot(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = popen(project, fleet, "-R", "production", "deploy", env={"BREAK": "hang_on_web2"})
    deadline = time.monotonic() + 20
    while not marker(fleet["web2"], "/srv/mid"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    fleet["web2"].stop()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "[web2]" in err and "Traceback" not in err, out + err
    for name in ("web1", "db1"):
        assert snapshot(fleet[name]) == before[name], name


def test_full_disk_during_export_changes_nothing_anywhere(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    before = {h.name: snapshot(h) for h in fleet.hosts}
    commit(repo, {"big.bin": os.urandom(3 * 1024 * 1024)}, "big file")
    # db1's /srv/app lives on a tmpfs with only a little room left.
    db1 = fleet["db1"]
    db1.sh(f"used=$(du -sk {APP} | cut -f1); mkdir -p /tmp/keep-db1 && cp -a {APP}/. /tmp/keep-db1/ && "
           f"mount -t tmpfs -o size=$((used + 1024))k tmpfs {APP} && cp -a /tmp/keep-db1/. {APP}/ && "
           f"rm -rf /tmp/keep-db1 && chown -R fake-test {APP}")
    before["db1"] = snapshot(db1)
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    assert "No space left" in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert snapshot(host) == before[host.name], host.name


def test_hanging_command_times_out_naming_host_and_command(fab, app):
    # env.command_timeout, set for the hook only: on a loaded machine 2 s could
    # also time out the deploy's own commands, which is not what this tests.
    fleet = app(extra='''
        import os
        from fake.api import settings

        @task
        def hang():
            if os.environ.get("BREAK") == "hang" and env.host_string == "web1":
                with settings(command_timeout=2):
                    run("sleep 30")

        after(updating, hang)
    ''')
    ok(deploy(fab, fleet, "deploy"))
    before = {h.name: snapshot(h) for h in fleet.hosts}
    started = time.monotonic()
    proc = fab(["-R", "production", "deploy"], fleet=fleet, env={"BREAK": "hang"})
    assert time.monotonic() - started < 15
    assert proc.returncode != 0 and "[web1] sleep 30" in proc.stderr and "timed out" in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert snapshot(host) == before[host.name], host.name


def _ssh_config_with(fleet, project, extra):
    text = fleet.ssh_config_path.read_text()
    text = text.replace("StrictHostKeyChecking no", "StrictHostKeyChecking yes")
    text = text.replace("UserKnownHostsFile /dev/null", f"UserKnownHostsFile {project}/known_hosts")
    path = project / "ssh_config"
    path.write_text(text)
    (project / "known_hosts").write_text(extra)
    return path


def test_changed_host_key_is_refused(project, make_fleet):
    fleet = make_fleet(1, names=["web1"])
    port = fleet["web1"].port
    wrong = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(project / "wrong")],
                           capture_output=True)
    assert wrong.returncode == 0
    pub = (project / "wrong.pub").read_text().split()
    config = _ssh_config_with(fleet, project, f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    (project / "fabfile.py").write_text("from fake.api import task, run\n@task\ndef t():\n    run('echo REACHED')\n")
    proc = subprocess.run([str(fab_bin), "-S", str(config), "-H", "web1", "t"], cwd=project,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "REACHED" not in proc.stdout, explain(proc)
    assert "[web1] host key for 127.0.0.1:" in proc.stderr and "does not match known_hosts" in proc.stderr

    config = _ssh_config_with(fleet, project, "")
    proc = subprocess.run([str(fab_bin), "-S", str(config), "-H", "web1", "t"], cwd=project,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "is unknown and StrictHostKeyChecking is yes" in proc.stderr, explain(proc)


def test_authentication_failure_names_host_and_user(fab, project, make_fleet):
    fleet = make_fleet(1, names=["web1"])
    (project / "fabfile.py").write_text("from fake.api import task, run\n@task\ndef t():\n    run('true')\n")
    proc = fab(["-H", "no-such-user@web1", "t"], fleet=fleet)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, explain(proc)
    assert "[no-such-user@web1] authentication failed for user 'no-such-user'" in proc.stderr, explain(proc)


# -- interrupts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_during_publishing_switches_hosts_back(project, app, repo, sig, code):
    fleet = app(extra=sabotage_hook("slow_publish", "'deploy:symlink'", 'run("touch /srv/switched; sleep 1")'))
    first = subprocess.run([str(fab_bin), "-S", str(fleet.ssh_config_path), "-R", "production", "deploy"],
                           cwd=project, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, explain(first)
    before = {h.name: live(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = popen(project, fleet, "-R", "production", "deploy", env={"BREAK": "slow_publish"})
    deadline = time.monotonic() + 20
    while not all(marker(h, "/srv/switched") for h in fleet.hosts):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, out + err
    assert "switched back to" in err, err
    for host in fleet.hosts:
        assert live(host) == before[host.name], host.name
    assert no_lock_anywhere(fleet)


# -- many runs, random failures ------------------------------------------------------------------------
def test_random_failures_never_split_the_fleet_or_lose_shared_files(fab, app, repo):
    hooks = "\n".join([
        sabotage_hook("break_update", "updating", 'run("exit 9") if env.host_string == os.environ["ON"] else None'),
        sabotage_hook("break_published", "published", 'run("exit 9") if env.host_string == os.environ["ON"] else None'),
        sabotage_hook("break_finished", "finished", 'run("exit 9") if env.host_string == os.environ["ON"] else None'),
    ])
    fleet = app(extra=hooks)
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        host.sh(f"echo precious-{host.name} > {APP}/shared/static/precious.txt")
    rng = random.Random(20261122)
    for step in range(10):
        action = rng.choice(["deploy", "deploy", "rollback"])
        breaking = rng.choice([None, "break_update", "break_published", "break_finished"])
        on = rng.choice([h.name for h in fleet.hosts])
        if action == "deploy":
            commit(repo, {"app.py": f"print({step})\n"}, f"step {step}")
        proc = fab(["-R", "production", action], fleet=fleet, env={"BREAK": breaking or "", "ON": on})
        state = f"step {step}: {action} breaking={breaking} on={on}" + explain(proc)
        assert "Traceback" not in proc.stderr, state
        lives = {live(h) for h in fleet.hosts}
        assert len(lives) == 1, f"hosts disagree: {lives} {state}"
        assert no_lock_anywhere(fleet), state
        for host in fleet.hosts:
            assert host.sh(f"cat {APP}/shared/static/precious.txt").strip() == f"precious-{host.name}", state
            assert host.sh(f"test -d {APP}/current/ && echo ok").strip() == "ok", state


def test_health_check_runs_after_published_hooks(fab, app, repo):
    fleet = app(extra='''
        env.healthcheck = "test -e /srv/restarted"
        @task
        def restart():
            run("touch /srv/restarted")
        after(published, restart)
    ''')
    proc = ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        assert marker(host, "/srv/restarted"), explain(proc)


def test_rollback_failing_after_the_switch_is_switched_back(fab, app, repo):
    fleet = app(extra=sabotage_hook("break_rollback", "published",
                                    'run("exit 5") if env.deploy_action == "rollback" and env.host_string == "db1" else None'))
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    before = {h.name: live(h) for h in fleet.hosts}
    proc = fab(["-R", "production", "rollback"], fleet=fleet, env={"BREAK": "break_rollback"})
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert live(host) == before[host.name], host.name
        assert not marker(host, f"{APP}/current/.fake-bad"), "a rollback target is not marked bad"
        assert "after a failed rollback" in host.sh(f"cat {APP}/revisions.log")
    assert no_lock_anywhere(fleet)


def test_linked_paths_never_reach_into_shared_through_a_symlink(fab, app, repo):
    # A linked file inside a linked dir would be deleted from shared/ through the link.
    fleet = app(extra="env.linked_dirs = ['config']\n")
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "is inside linked path 'config'" in proc.stderr, explain(proc)
    assert fleet["web1"].sh(f"cat {APP}/shared/config/app.ini").strip() == "secret=1"
    # A symlink in the repository above a linked path is refused on the host.
    subprocess.run(["sh", "-c", f"cd {repo} && ln -s /srv/app/shared/static public && "
                                f"git -c safe.directory='*' add public && "
                                f"git -c safe.directory='*' -c user.name=t -c user.email=t@t commit -qm link && "
                                f"chown -R fake-test ."], check=True)
    fleet = app(extra="env.linked_dirs = ['public/uploads']\n")
    for host in fleet.hosts:
        host.sh(f"mkdir -p {APP}/shared/static/uploads && echo keep > {APP}/shared/static/keep.txt && chown -R fake-test /srv")
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "public is not a symlink" in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert host.sh(f"cat {APP}/shared/static/keep.txt").strip() == "keep"
        assert host.sh(f"test -d {APP}/shared/static/uploads && echo ok").strip() == "ok"
        assert releases(host) == []


def test_warn_only_never_hides_fakes_own_failures(fab, app):
    fleet = app(extra="env.roledefs['production']['branch'] = 'no-such-branch'\n")
    proc = fab(["-w", "-R", "production", "deploy"], fleet=fleet)
    assert proc.returncode != 0 and "branch 'no-such-branch' not found" in proc.stderr, explain(proc)
    assert all(releases(h) == [] for h in fleet.hosts)


def test_timeouts_from_the_command_line_are_numbers(fab, app):
    fleet = app(extra="env.healthcheck = 'true'\n")
    proc = fab(["-R", "production", "--set", "command_timeout=30,healthcheck_timeout=5", "deploy"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    proc = fab(["-R", "production", "--set", "command_timeout=soon", "deploy"], fleet=fleet)
    assert proc.returncode != 0 and "env.command_timeout must be a number, got 'soon'" in proc.stderr, explain(proc)


def test_switch_back_restores_a_current_fake_did_not_create(fab, app):
    fleet = app(extra="env.healthcheck = 'false'\n")
    for host in fleet.hosts:
        host.sh(f"mkdir -p /srv/legacy && ln -s /srv/legacy {APP}/current && chown -R fake-test /srv")
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "health check 'false' failed" in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert live(host) == "/srv/legacy", host.name
    assert "switched back to /srv/legacy" in proc.stderr


def test_forced_rollback_leaves_a_host_without_a_target_alone(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    r1, r2 = releases(fleet["web1"])
    fleet["db1"].sh(f"ln -sfn releases/{r1} {APP}/current")  # db1 has nothing earlier
    proc = ok(deploy(fab, fleet, "rollback", "--force"))
    assert live(fleet["web1"]) == f"releases/{r1}" and live(fleet["web2"]) == f"releases/{r1}"
    assert live(fleet["db1"]) == f"releases/{r1}" and releases(fleet["db1"]) == [r1, r2]
    assert "db1: not rolled back: no earlier release to roll back to" in proc.stdout, explain(proc)


def test_unwritable_deploy_path_is_named_not_called_a_lock(fab, app):
    fleet = app(deploy_path="/srv/readonly/app")
    for host in fleet.hosts:
        host.sh("chown -R root /srv/readonly && chmod -R go-w /srv/readonly")  # the login user cannot write it
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0, explain(proc)
    assert "cannot create the lock file /srv/readonly/app/deploy.lock" in proc.stderr, explain(proc)
    assert "unlock" not in proc.stderr


def test_forced_rollback_with_no_host_able_to_roll_back_fails(fab, app):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    proc = deploy(fab, fleet, "rollback", "--force")
    assert proc.returncode != 0 and "no earlier release to roll back to" in proc.stderr, explain(proc)
