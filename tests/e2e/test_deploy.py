"""`fab deploy` / `rollback` against real sshd hosts and a real git repository."""

import re
import shlex
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import default_sigint, explain, fab_bin
from tests.e2e.sshd import branch, commit, make_repo

APP = "/srv/app"
HOSTS = ["web1", "web2", "db1"]
RELEASE = re.compile(r"^\d{14}$")

FABFILE = '''
from fake.api import env, run, task
from fake.tasks.deploy import *

env.roledefs = {{
    'staging': {{'hosts': ['web1', 'web2', 'db1'], 'branch': 'staging'}},
    'production': {{'hosts': ['web1', 'web2', 'db1'], 'branch': 'master'}},
}}
env.deploy_path = {deploy_path!r}
env.repo_url = {repo!r}
env.linked_dirs = ['static', 'var/uploads']
env.linked_files = ['config/app.ini']
{extra}
'''


@pytest.fixture
def repo(project):
    path = project / "repo"
    make_repo(path)
    branch(path, "staging")
    return path


@pytest.fixture
def app(project, repo, fleet3):
    """A deployable project: fabfile, repo, and the shared linked file on each host."""

    def setup(extra="", deploy_path=APP, hosts=fleet3.hosts):
        text = FABFILE.format(deploy_path=deploy_path, repo=str(repo), extra=textwrap.dedent(extra))
        (project / "fabfile.py").write_text(text)
        for host in hosts:
            shared = shlex.quote(deploy_path + "/shared/config")
            host.sh(f"mkdir -p {shared} && echo 'secret=1' > {shared}/app.ini && chown -R fake-test /srv")
        return fleet3

    return setup


def deploy(fab, fleet, *args, role="production"):
    return fab(["-R", role, *args], fleet=fleet)


def ok(proc):
    assert proc.returncode == 0, explain(proc)
    return proc


def live(host, path=APP):
    return host.sh(f"readlink {shlex.quote(path + '/current')} || true").strip()


def releases(host, path=APP):
    return sorted(host.sh(f"ls {shlex.quote(path + '/releases')} 2>/dev/null || true").split())


def snapshot(host):
    """Every path under /srv with its type and link target, plus the log: 'nothing changed' means equal.

    The git mirror's insides are left out: a fetch may refresh that cache
    even when the deploy then stops (as Capistrano's does).
    """
    tree = host.sh("cd /srv && find . -path ./app/repo -prune -o -printf '%p %y %l\\n' | sort")
    log = host.sh(f"cat {APP}/revisions.log 2>/dev/null || true")
    return tree, log


def sha_of(repo, ref):
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), "rev-parse", ref],
                          capture_output=True, text=True, check=True).stdout.strip()


# -- 1. first deploy -------------------------------------------------------------------
def test_first_deploy_lays_out_every_host(fab, app, repo):
    fleet = app()
    proc = ok(deploy(fab, fleet, "deploy"))
    master = sha_of(repo, "master")
    names = set()
    for host in fleet.hosts:
        rels = releases(host)
        assert len(rels) == 1 and RELEASE.match(rels[0]), (host.name, rels, explain(proc))
        names.add(rels[0])
        assert live(host) == f"releases/{rels[0]}"
        rel = f"{APP}/releases/{rels[0]}"
        assert host.sh(f"cat {rel}/REVISION").strip() == master
        assert host.sh(f"cat {APP}/current/app.py").strip() == "print('hello from fake')"
        assert host.sh(f"test ! -e {rel}/.git && echo nogit").strip() == "nogit"
        for path in ("static", "var/uploads", "config/app.ini"):
            assert host.sh(f"readlink {rel}/{path}").strip() == f"{APP}/shared/{path}", path
        assert host.sh(f"cat {APP}/current/config/app.ini").strip() == "secret=1"
        assert host.sh(f"git --git-dir={APP}/repo rev-parse --is-bare-repository").strip() == "true"
        log = host.sh(f"cat {APP}/revisions.log")
        assert re.fullmatch(rf"Branch master \(at {master}\) deployed as release {rels[0]} by \S+\n", log), log
        assert host.sh(f"test ! -e {APP}/deploy.lock && echo unlocked").strip() == "unlocked"
    assert len(names) == 1, f"one release name on every host, got {names}"


# -- 2. second deploy, shared content survives --------------------------------------------
def test_second_deploy_and_rollback_keep_shared_content(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        host.sh(f"echo 'user upload {host.name}' > {APP}/shared/static/upload.txt")
    new = commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        rels = releases(host)
        assert len(rels) == 2 and live(host) == f"releases/{rels[1]}"
        assert host.sh(f"cat {APP}/current/REVISION").strip() == new
        assert host.sh(f"cat {APP}/current/static/upload.txt").strip() == f"user upload {host.name}"
    ok(deploy(fab, fleet, "rollback"))
    for host in fleet.hosts:
        assert host.sh(f"cat {APP}/current/app.py").strip() == "print('hello from fake')"
        assert host.sh(f"cat {APP}/shared/static/upload.txt").strip() == f"user upload {host.name}"
        assert host.sh(f"cat {APP}/current/static/upload.txt").strip() == f"user upload {host.name}"


# -- 3. roles deploy their own branches ---------------------------------------------------
def test_staging_and_production_deploy_their_branches(fab, app, repo):
    fleet = app()
    staging_sha = commit(repo, {"app.py": "print('staging')\n"}, "staging work", branch="staging")
    master_sha = sha_of(repo, "master")
    assert staging_sha != master_sha
    ok(deploy(fab, fleet, "deploy", role="staging"))
    assert fleet["web1"].sh(f"cat {APP}/current/REVISION").strip() == staging_sha
    ok(deploy(fab, fleet, "deploy", role="production"))
    assert fleet["web1"].sh(f"cat {APP}/current/REVISION").strip() == master_sha
    log = fleet["web2"].sh(f"cat {APP}/revisions.log")
    assert f"Branch staging (at {staging_sha})" in log and f"Branch master (at {master_sha})" in log


# -- 4. rollback ------------------------------------------------------------------------
def test_rollback_previous_and_named_and_archive(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    first = releases(fleet["web1"])[0]
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    ok(deploy(fab, fleet, "deploy"))
    first_, second, third = releases(fleet["web1"])
    assert first_ == first

    ok(deploy(fab, fleet, "rollback"))
    for host in fleet.hosts:
        assert live(host) == f"releases/{second}"
        assert releases(host) == [first, second], "the release rolled back from is removed"
        assert host.sh(f"tar -tzf {APP}/rolled-back-release-{third}.tar.gz | head -1").strip().startswith(third)
        assert host.sh(f"tail -n 1 {APP}/revisions.log").strip().endswith(f"rolled back to release {second}")

    ok(deploy(fab, fleet, "rollback", "--release", first))
    for host in fleet.hosts:
        assert live(host) == f"releases/{first}"
        assert host.sh(f"cat {APP}/current/app.py").strip() == "print('hello from fake')"


def test_rollback_with_one_release_fails_cleanly(fab, app):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    before = {h.name: snapshot(h) for h in fleet.hosts}
    proc = deploy(fab, fleet, "rollback")
    assert proc.returncode != 0, explain(proc)
    assert "no earlier release to roll back to" in proc.stderr and "Traceback" not in proc.stderr, explain(proc)
    assert {h.name: snapshot(h) for h in fleet.hosts} == before


def test_rollback_to_unknown_release_fails_naming_it(fab, app):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    proc = deploy(fab, fleet, "rollback", "--release", "20000101000000")
    assert proc.returncode != 0 and "release 20000101000000 not found" in proc.stderr, explain(proc)


# -- 5. cleanup ---------------------------------------------------------------------------
def test_cleanup_keeps_the_newest_releases(fab, app, repo):
    fleet = app(extra="env.keep_releases = 2\n")
    made = []
    for n in range(4):
        commit(repo, {"app.py": f"print({n})\n"}, f"c{n}")
        ok(deploy(fab, fleet, "deploy"))
        made.append(releases(fleet["web1"])[-1])
    for host in fleet.hosts:
        rels = releases(host)
        assert rels == made[-2:], (host.name, rels, made)
        assert live(host) == f"releases/{made[-1]}"


# -- 6. hooks -----------------------------------------------------------------------------
def test_user_hooks_run_on_each_host_in_order(fab, app):
    fleet = app(extra='''
        @task
        def restart():
            run("echo restart >> /srv/hooks.log")

        @task
        def migrate():
            run("echo migrate-before-publish current=$(readlink /srv/app/current || echo none) >> /srv/hooks.log")

        @task
        def built():
            run("test -f " + env.release_path + "/REVISION && echo built >> /srv/hooks.log")

        after(finished, restart)
        before(publishing, migrate)
        after(updated, built)
    ''')
    proc = ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        lines = host.sh("cat /srv/hooks.log").split("\n")
        assert lines[:3] == ["built", "migrate-before-publish current=none", "restart"], (host.name, lines, explain(proc))


# -- 7. a failing hook in updating ----------------------------------------------------------
def test_failure_in_updating_on_one_host_changes_no_host(fab, app, repo):
    fleet = app(extra='''
        import os

        @task
        def flaky():
            if os.environ.get("BREAK_WEB2") and env.host_string == 'web2':
                run("echo 'web2 cannot build' >&2; exit 7")

        after(updating, flaky)
    ''')
    ok(deploy(fab, fleet, "deploy"))  # a live release to keep
    before = {h.name: snapshot(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('broken')\n"}, "broken")
    proc = fab(["-R", "production", "deploy"], fleet=fleet, env={"BREAK_WEB2": "1"})
    assert proc.returncode != 0, explain(proc)
    assert "[web2]" in proc.stderr and "web2 cannot build" in proc.stderr, explain(proc)
    assert re.search(r"^web1\s+ok\b", proc.stderr, re.M), explain(proc)
    assert re.search(r"^web2\s+FAILED\b", proc.stderr, re.M), explain(proc)
    assert "Traceback" not in proc.stderr
    for host in fleet.hosts:
        assert snapshot(host) == before[host.name], host.name


# -- 8. the lock ---------------------------------------------------------------------------
def test_a_held_lock_stops_the_deploy_and_unlock_clears_it(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    fleet["db1"].sh(f'echo \'{{"user": "alice", "from": "laptop", "pid": 42, "since": 1700000000, '
                    f'"task": "deploy", "token": "t"}}\' > {APP}/deploy.lock')
    before = {h.name: snapshot(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0, explain(proc)
    assert "[db1]" in proc.stderr and "locked by alice@laptop (pid 42, deploy)" in proc.stderr, explain(proc)
    assert "fab -R production unlock" in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert snapshot(host) == before[host.name], host.name
    proc = ok(deploy(fab, fleet, "unlock"))
    assert "[db1] removed lock held by alice@laptop" in proc.stdout, explain(proc)
    assert "[web1] no lock" in proc.stdout, explain(proc)
    ok(deploy(fab, fleet, "deploy"))


def test_releases_lists_commits_and_marks_live(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    sha = commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    proc = ok(deploy(fab, fleet, "releases"))
    older, newest = releases(fleet["db1"])
    assert re.search(rf"^\[db1\] {newest}  \S+ \S+  {sha[:12]}  master\s+\S+\s+live$", proc.stdout, re.M), explain(proc)
    assert re.search(rf"^\[db1\] {older} .* previous$", proc.stdout, re.M), explain(proc)
    assert len(re.findall(r"\blive$", proc.stdout, re.M)) == 3, explain(proc)
    assert "disagree" not in proc.stderr
    fleet["web2"].sh(f"ln -sfn releases/{older} {APP}/current")
    proc = ok(deploy(fab, fleet, "releases"))
    assert "hosts disagree on the live release" in proc.stderr and f"web2 {older}" in proc.stderr, explain(proc)


# -- 9. bad input: one line, nothing changed ------------------------------------------------
@pytest.mark.parametrize("extra, needle", [
    ("", "linked file /srv/app/shared/config/app.ini is missing"),
    ("env.roledefs['production']['branch'] = 'no-such-branch'", "branch 'no-such-branch' not found"),
    ("env.repo_url = '/srv/nowhere/repo.git'", "repository not reachable"),
])
def test_bad_input_changes_nothing(fab, app, repo, extra, needle):
    fleet = app(extra=extra)
    if needle.startswith("linked file"):
        fleet["web2"].sh(f"rm {APP}/shared/config/app.ini")
    before = {h.name: snapshot(h) for h in fleet.hosts}
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0, explain(proc)
    assert needle in proc.stderr and "Traceback" not in proc.stderr, explain(proc)
    for host in fleet.hosts:
        assert snapshot(host) == before[host.name], host.name


def test_hostile_branch_name_runs_nothing(fab, app):
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    fleet = app(extra=f"env.roledefs['production']['branch'] = 'x;touch {marker}'")
    before = {h.name: snapshot(h) for h in fleet.hosts}
    proc = deploy(fab, fleet, "deploy")
    # Refused up front (it holds a space) or looked up literally and not found: never run.
    assert proc.returncode != 0 and f"'x;touch {marker}'" in proc.stderr, explain(proc)
    assert not Path(marker).exists()
    for host in fleet.hosts:
        assert host.sh(f"test -e {marker} && echo yes || echo no").strip() == "no"
        assert snapshot(host) == before[host.name]


def test_deploy_path_with_spaces_and_quotes(fab, app):
    odd = "/srv/my app's \"dir\""
    fleet = app(deploy_path=odd)
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        rels = releases(host, odd)
        assert len(rels) == 1 and live(host, odd) == f"releases/{rels[0]}"


def test_missing_deploy_path_fails_before_connecting(fab, app):
    fleet = app(extra="del env.deploy_path\n")
    counts = {h.name: h.accepted_count() for h in fleet.hosts}
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "env.deploy_path is required" in proc.stderr, explain(proc)
    assert {h.name: h.accepted_count() for h in fleet.hosts} == counts, "no host was contacted"


# -- 10. the README demo ---------------------------------------------------------------------
def test_readme_demo_runs_on_the_local_target(tmp_path):
    root = Path(__file__).resolve().parents[2]
    target = tmp_path / "demo"
    proc = subprocess.run(
        [str(fab_bin), "-r", str(root / "examples"), "-R", "local", "--set", f"deploy_path={target}",
         "deploy", "deploy", "rollback", "show"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, explain(proc)
    rels = sorted(p.name for p in (target / "releases").iterdir())
    assert len(rels) == 1 and (target / "current").resolve().name == rels[0], rels
    assert len(list(target.glob("rolled-back-release-*.tar.gz"))) == 1
    assert "restarting the app" in proc.stdout and "rolled back to release" in proc.stdout, explain(proc)
    # In a clone (as in CI) the default branch is the checkout's, not refs/remotes/origin/HEAD's.
    assert re.search(r"^\[local\] Branch [\w.-]+ \(at [0-9a-f]{40}\) deployed", proc.stdout, re.M), explain(proc)


def test_ctrl_c_during_updating_leaves_every_host_as_it_was(project, app, repo):
    from tests.e2e.test_cli import _interrupt_when

    fleet = app(extra='''
        import os

        @task
        def slow_build():
            if os.environ.get("SLOW"):
                run("touch /srv/building; sleep 1")

        after(updating, slow_build)
    ''')
    first = subprocess.run([str(fab_bin), "-S", str(fleet.ssh_config_path), "-R", "production", "deploy"],
                           cwd=project, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, explain(first)
    before = {h.name: snapshot(h) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = subprocess.Popen([str(fab_bin), "-S", str(fleet.ssh_config_path), "-R", "production", "deploy"],
                            cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**__import__("os").environ, "SLOW": "1"},
                            preexec_fn=default_sigint)
    out, err = _interrupt_when(proc, lambda: all(
        h.sh("test -e /srv/building && echo y || echo n").strip() == "y" for h in fleet.hosts))
    assert proc.returncode == 130, f"{out}\n{err}"
    for host in fleet.hosts:
        host.sh("rm -f /srv/building")
        assert snapshot(host) == before[host.name], host.name


def test_an_empty_lock_file_still_stops_the_deploy(fab, app):
    fleet = app()
    fleet["web2"].sh(f"mkdir -p {APP} && : > {APP}/deploy.lock && chown -R fake-test /srv")
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "[web2] /srv/app is locked by an unreadable lock ('')" in proc.stderr, explain(proc)
    assert all(releases(h) == [] for h in fleet.hosts)


def test_execute_deploy_from_a_task_on_several_hosts_gives_each_its_own_flow(app, fab, repo):
    """Each host's execute('deploy') is a flow of its own: its own lock token, release and stages."""
    fleet = app(extra="""
        from fake.api import execute

        @task
        def ship(c):
            execute('deploy')
    """)
    sha = sha_of(repo, "master")
    proc = ok(deploy(fab, fleet, "ship"))
    assert proc.stdout.count(": 1 host(s) as release") == 3, explain(proc)
    for host in fleet.hosts:
        assert RELEASE.match(live(host).removeprefix("releases/")), (host.name, explain(proc))
        assert host.sh(f"cat {APP}/current/REVISION").strip() == sha
        assert host.sh(f"ls -A {APP}").split().count("deploy.lock") == 0, host.name  # every lock removed


def test_the_lock_is_held_through_fabfile_hooks_after_finishing(app, fab, project):
    """Only when nothing of the fabfile's runs after finishing does the finish command release the lock."""
    fleet = app(extra=f"""
        @task
        def restart(c):
            run("test -f {APP}/deploy.lock && echo lock-still-held")

        after('finished', restart)
    """)
    log = project / "log" / "fake.log"

    def commands(host):
        return len(re.findall(rf"\[{host.name}\] exit 0 in", log.read_text() if log.exists() else ""))

    def run_counting(*args):
        before = {h.name: commands(h) for h in fleet.hosts}
        proc = ok(deploy(fab, fleet, *args))
        for host in fleet.hosts:
            assert host.sh(f"ls -A {APP}").split().count("deploy.lock") == 0, host.name
        return proc, {h.name: commands(h) - before[h.name] for h in fleet.hosts}

    proc, counts = run_counting("deploy")
    assert proc.stdout.count("lock-still-held") == 3, explain(proc)
    # probe, update, switch, finish, the hook's command, then the lock's own command
    assert set(counts.values()) == {6}, counts
    # a hook on failed may still run after finishing (when another host fails there): the lock stays too
    (project / "fabfile.py").write_text((project / "fabfile.py").read_text().replace(
        "after('finished', restart)", "after('failed', restart)"))
    proc, counts = run_counting("deploy")
    assert set(counts.values()) == {5}, counts
    (project / "fabfile.py").write_text((project / "fabfile.py").read_text().replace("after('failed', restart)", ""))
    proc, counts = run_counting("deploy")
    assert set(counts.values()) == {4}, counts  # the finish command releases the lock
    proc, counts = run_counting("rollback")
    assert set(counts.values()) == {3}, counts  # probe, switch, archive (which releases the lock)


def test_a_failed_deploy_releases_the_lock_in_its_clean_up_command(app, fab, project):
    """After a failure the clean-up command takes the lock with it, unless a fabfile hook still follows."""
    fleet = app(extra="""
        @task
        def notify(c):
            run("echo deploy-failed")
    """)
    log = project / "log" / "fake.log"

    def commands(host):
        return len(re.findall(rf"\[{host.name}\] exit \S+ in", log.read_text() if log.exists() else ""))

    def failing_deploy():
        before = {h.name: commands(h) for h in fleet.hosts}
        proc = deploy(fab, fleet, "deploy")
        assert proc.returncode != 0, explain(proc)
        for host in fleet.hosts:
            assert host.sh(f"ls -A {APP}").split().count("deploy.lock") == 0, host.name
            assert host.sh(f"ls -A {APP}/releases").split() == [], host.name  # every unpublished release removed
        return proc, {h.name: commands(h) - before[h.name] for h in fleet.hosts}

    # a file where the linked dir shared/static should be: web2's update fails
    fleet["web2"].sh(f"touch {APP}/shared/static && chown fake-test {APP}/shared/static")
    proc, counts = failing_deploy()
    assert "web2" in proc.stderr + proc.stdout
    # probe, update (failed on web2), then one clean-up command that also releases the lock
    assert counts == {"web1": 3, "web2": 3, "db1": 3}, (counts, explain(proc))
    # a fabfile hook on failed runs after the clean-up, so the lock waits for it and its own command
    (project / "fabfile.py").write_text((project / "fabfile.py").read_text() + "\nafter('failed', notify)\n")
    proc, counts = failing_deploy()
    assert proc.stdout.count("deploy-failed") == 3, explain(proc)
    assert counts == {"web1": 5, "web2": 5, "db1": 5}, (counts, explain(proc))
    # a failed health check after publishing: the switch back takes the lock with it
    text = (project / "fabfile.py").read_text().replace("\nafter('failed', notify)\n", "\n")
    (project / "fabfile.py").write_text(text + f"\nenv.healthcheck = 'test ! -e {APP}/unhealthy'\n")
    fleet["web2"].sh(f"rm {APP}/shared/static && touch {APP}/unhealthy")
    before = {h.name: commands(h) for h in fleet.hosts}
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "health check" in proc.stderr + proc.stdout, explain(proc)
    for host in fleet.hosts:
        assert host.sh(f"ls -A {APP}").split().count("deploy.lock") == 0, host.name
        assert live(host) == "", host.name  # there was no release before: current is gone again
    counts = {h.name: commands(h) - before[h.name] for h in fleet.hosts}
    # probe, update, switch, health check, switch back (with the lock)
    assert counts == {"web1": 5, "web2": 5, "db1": 5}, (counts, explain(proc))


def test_execute_deploy_with_roles_uses_those_roles_values_in_every_stage(app, fab, repo):
    """execute('deploy', roles=['staging']) deploys staging's branch; a later task sees no staging values."""
    commit(repo, {"app.py": "print('staging only')\n"}, "staging change", branch="staging")
    fleet = app(extra="""
        from fake.api import execute

        @task
        def ship():
            execute('deploy', roles=['staging'])
            print("branch after ship: %s" % env.get('branch'))
    """)
    proc = ok(fab(["ship"], fleet=fleet))
    staging = sha_of(repo, "staging")
    assert staging != sha_of(repo, "master")
    for host in fleet.hosts:
        assert host.sh(f"cat {APP}/current/REVISION").strip() == staging, host.name
    assert "branch after ship: None" in proc.stdout, explain(proc)


def test_a_flow_run_inline_from_a_task_with_roles_uses_those_roles(app, fab, repo):
    """@roles('staging') on a task that calls execute('deploy'): every stage sees staging's branch."""
    commit(repo, {"app.py": "print('staging only')\n"}, "staging change", branch="staging")
    fleet = app(extra="""
        from fake.api import execute, roles

        @task
        @roles('staging')
        def ship():
            execute('deploy')
    """)
    ok(fab(["-H", "web1", "ship"], fleet=fleet))
    assert fleet["web1"].sh(f"cat {APP}/current/REVISION").strip() == sha_of(repo, "staging")
