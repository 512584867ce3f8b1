"""After the controller dies, and when deploys queue: what the next run says, and that it repairs."""

import os
import signal
import textwrap
import time

import pytest

from tests.e2e.conftest import explain
from tests.e2e.sshd import commit
from tests.e2e.test_deploy import APP, app, deploy, live, ok, releases, repo  # noqa: F401
from tests.e2e.test_safety import LOCK, marker, no_lock_anywhere, popen, sabotage_hook

HOLD_MV = textwrap.dedent("""\
    #!/bin/sh
    # mv, held while /srv/hold-mv exists: the window between two hosts' switches.
    if [ -e /srv/hold-mv ]; then
      echo $$ > /srv/held-mv.pid
      sleep 60
      exit 1
    fi
    exec /srv/.mv-real "$@"
""")


def shared_files(host):
    return host.sh(f"cd {APP}/shared && find . -type f -exec sha256sum {{}} + | sort")


def bind_wrapper(fleet, host, command, script):
    """Put ``script`` over /usr/bin/``command`` on ``host`` (its own mount namespace); the real one is /srv/.``command``-real."""
    wrapper = fleet.workdir / f"{command}-wrapper-{host.name}"
    wrapper.write_text(script)
    wrapper.chmod(0o755)
    host.sh(f"cp /usr/bin/{command} /srv/.{command}-real && mount --bind {wrapper} /usr/bin/{command}")


def small_disk(host, size, room=""):
    """Move ``host``'s app onto a tmpfs of ``size``, then fill it (leaving ``room`` free, e.g. '64K')."""
    keep = f"/tmp/keep-{host.name}"
    leave = f" && truncate -s -{room} {APP}/filler" if room else ""
    host.sh(f"mkdir -p {keep} && cp -a {APP}/. {keep}/ && mount -t tmpfs -o size={size} tmpfs {APP} && "
            f"cp -a {keep}/. {APP}/ && rm -rf {keep} && chown -R fake-test {APP} && "
            f"(dd if=/dev/zero of={APP}/filler bs=4k 2>/dev/null || true){leave}")


def wait_for(check, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_mid_switch_then_the_next_deploy_explains_and_take_lock_repairs(fab, project, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    old = {h.name: live(h) for h in fleet.hosts}
    shared_before = {h.name: shared_files(h) for h in fleet.hosts}
    slow = fleet["db1"]
    bind_wrapper(fleet, slow, "mv", HOLD_MV)
    slow.sh("touch /srv/hold-mv")
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = popen(project, fleet, "-R", "production", "deploy")
    try:
        switched = wait_for(lambda: all(live(h) != old[h.name] for h in fleet.hosts if h is not slow)
                            and marker(slow, "/srv/held-mv.pid"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert switched, "web1 and web2 switched while db1's switch was held"
    slow.sh("kill $(cat /srv/held-mv.pid); rm -f /srv/hold-mv /srv/held-mv.pid")
    assert live(slow) == old["db1"] and live(fleet["web1"]) != old["web1"]

    # The next deploy names the dead run's lock and which host has which release.
    nxt = deploy(fab, fleet, "deploy")
    assert nxt.returncode != 0, explain(nxt)
    assert f"is not running on" in nxt.stderr and "a run that is gone" in nxt.stderr, explain(nxt)
    assert "the hosts are on different releases" in nxt.stderr, explain(nxt)
    assert f"db1: live release {old['db1'].split('/')[-1]}" in nxt.stderr, explain(nxt)
    assert "fab --take-lock -R production deploy" in nxt.stderr, explain(nxt)

    # The documented repair: every host on one release, shared/ untouched, no lock left.
    ok(fab(["--take-lock", "-R", "production", "deploy"], fleet=fleet))
    lives = {live(h) for h in fleet.hosts}
    assert len(lives) == 1 and lives != {old["web1"]}, lives
    assert {h.name: shared_files(h) for h in fleet.hosts} == shared_before
    assert no_lock_anywhere(fleet)


def test_take_lock_refuses_a_lock_whose_run_may_still_be_alive(fab, app):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    host = fleet["web1"]
    host.sh(f"""printf '%s\\n' '{{"from": "elsewhere", "pid": 1, "task": "deploy", "token": "abc", "user": "ann", "since": 1}}' > {LOCK}""")
    proc = fab(["--take-lock", "-R", "production", "deploy"], fleet=fleet)
    assert proc.returncode != 0, explain(proc)
    assert "[web1]" in proc.stderr and "is locked by ann@elsewhere (pid 1, deploy)" in proc.stderr, explain(proc)
    assert '"token": "abc"' in host.sh(f"cat {LOCK}"), "another machine's lock is never taken"


def test_two_deploys_with_lock_wait_both_succeed_one_after_the_other(fab, project, app, repo):
    fleet = app(extra=sabotage_hook("hold", "started", "__import__('time').sleep(1)"))
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    runs = [popen(project, fleet, "--lock-wait", "30", "-R", "production", "deploy", env={"BREAK": "hold"})
            for _ in range(2)]
    outs = [p.communicate(timeout=90) for p in runs]
    for p, (out, err) in zip(runs, outs):
        assert p.returncode == 0, f"{out}\n{err}"
    assert any("waiting up to 30s for the lock" in err for _, err in outs), outs
    for host in fleet.hosts:
        log = host.sh(f"cat {APP}/revisions.log").splitlines()
        deployed = [line.split(" deployed as release ")[1].split()[0] for line in log if "deployed as release" in line]
        assert len(deployed) == 3, log
        assert live(host) == f"releases/{deployed[-1]}", (host.name, log)
    assert no_lock_anywhere(fleet)


LATE_MV = textwrap.dedent("""\
    #!/bin/sh
    # mv, held while /srv/hold-mv exists, then done: a switch that lands late.
    while [ -e /srv/hold-mv ]; do touch /srv/mv-waiting; sleep 0.05; done
    exec /srv/.mv-real "$@"
""")


def test_a_switch_held_past_its_timeout_can_never_land_after_the_clean_up(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    slow = fleet["db1"]
    old = live(slow)
    bind_wrapper(fleet, slow, "mv", LATE_MV)
    slow.sh("touch /srv/hold-mv")
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = fab(["--set", "command_timeout=3", "-R", "production", "deploy"], fleet=fleet)
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    assert marker(slow, "/srv/mv-waiting"), "the switch was held"
    slow.sh("rm -f /srv/hold-mv")  # the held mv now goes ahead
    time.sleep(0.5)
    for host in fleet.hosts:
        assert live(host) == old if host is slow else live(host) != "", explain(proc)
        assert host.sh(f"test -e {APP}/current/REVISION && echo ok").strip() == "ok", host.name
    assert no_lock_anywhere(fleet)


def two_releases(fab, app, repo, task):
    """A fleet with two releases (and, for a deploy, a third commit to ship); db1 is the host held."""
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    if task == "deploy":
        commit(repo, {"app.py": "print('v3')\n"}, "v3")
    return fleet, fleet["db1"], {h.name: live(h) for h in fleet.hosts}


def unchanged_then_the_next_run_clears_the_fence(fab, fleet, slow, task, before, proc):
    for host in fleet.hosts:
        assert live(host) == before[host.name], (host.name, explain(proc))
        assert host.sh(f"test -e {APP}/current/REVISION && echo ok").strip() == "ok", host.name
    assert no_lock_anywhere(fleet)
    # The next run, holding the lock, takes the fence down and switches as usual.
    ok(deploy(fab, fleet, task))
    assert len({live(h) for h in fleet.hosts}) == 1
    assert slow.sh(f"ls -a {APP}").count(".current.fake") == 0, slow.sh(f"ls -la {APP}")


def held(command, pattern, hold, waiting, done):
    """A /usr/bin/``command`` that, for arguments matching ``pattern``, waits while /srv/``hold``
    exists (touching /srv/``waiting``), then runs the real one and touches /srv/``done``."""
    return textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in
          {pattern})
            while [ -e /srv/{hold} ]; do touch /srv/{waiting}; sleep 0.05; done
            /srv/.{command}-real "$@"; rc=$?; touch /srv/{done}; exit $rc;;
        esac
        exec /srv/.{command}-real "$@"
    """)


# The switch's ln -s, held, then done: a switch stopped before its temp link.
LATE_LN = held("ln", "*.current.fake.tmp", "hold-ln", "ln-waiting", "ln-done")


@pytest.mark.parametrize("task", ["deploy", "rollback"])
def test_a_switch_stalled_before_its_temp_link_can_never_land_after_the_clean_up(fab, app, repo, task):
    """The chaos run's round 374 (seed 20261129), replayed: the clean-up fences the temp link's place."""
    fleet, slow, before = two_releases(fab, app, repo, task)
    bind_wrapper(fleet, slow, "ln", LATE_LN)
    slow.sh("touch /srv/hold-ln")
    proc = fab(["--set", "command_timeout=3", "-R", "production", task], fleet=fleet)
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    assert marker(slow, "/srv/ln-waiting"), "the switch was held before its ln"
    slow.sh("rm -f /srv/hold-ln")  # the stalled switch now goes on: ln, then mv -T
    assert wait_for(lambda: marker(slow, "/srv/ln-done"), 10)
    time.sleep(0.5)  # its mv -T
    unchanged_then_the_next_run_clears_the_fence(fab, fleet, slow, task, before, proc)


def test_the_next_deploy_removes_releases_a_dead_run_left_half_made(fab, app, repo):
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    host = fleet["web2"]
    host.sh(f"mkdir -p {APP}/releases/20200101000000/app {APP}/releases/notes && chown -R fake-test {APP}/releases")  # no REVISION
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    assert "20200101000000" not in releases(host) and "notes" in releases(host), releases(host)


def test_a_host_whose_sshd_restarts_mid_update_is_reached_again_for_the_clean_up(fab, project, app, repo):
    """The chaos run's lock-left rounds, replayed: the clean-up reconnects within connect_timeout."""
    fleet = app(extra=sabotage_hook("hang_on_web2", "updating",
                                    'run("touch /srv/mid; sleep 5") if env.host_string == "web2" else None'))
    ok(deploy(fab, fleet, "deploy"))
    web2 = fleet["web2"]
    before = {h.name: (live(h), releases(h)) for h in fleet.hosts}
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = popen(project, fleet, "-R", "production", "deploy", env={"BREAK": "hang_on_web2"})
    assert wait_for(lambda: marker(web2, "/srv/mid")), "web2 reached the hook"
    web2.crash()  # sshd and the session die with it: the connection drops mid-step
    time.sleep(0.5)
    web2.restart()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "[web2]" in err, out + err
    assert {h.name: (live(h), releases(h)) for h in fleet.hosts} == before, out + err
    assert no_lock_anywhere(fleet), out + err


def test_a_full_disk_never_leaves_an_empty_lock(fab, app):
    """The chaos run's '(empty)' lock, replayed: the lock appears whole or not at all."""
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    db1 = fleet["db1"]
    small_disk(db1, "2m")
    proc = deploy(fab, fleet, "deploy")
    assert proc.returncode != 0 and "[db1]" in proc.stderr and "disk not full" in proc.stderr, explain(proc)
    assert not marker(db1, LOCK), db1.sh(f"ls -la {APP}")
    db1.sh(f"rm -f {APP}/filler")
    ok(deploy(fab, fleet, "deploy"))


def test_a_rollback_on_a_full_disk_leaves_no_half_archive(fab, app, repo):
    """The chaos run's rounds 407 and 642, replayed: tar fails on a full disk; its output goes."""
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n", "big.bin": os.urandom(300 * 1024)}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    db1 = fleet["db1"]
    # Room for the lock and the log, not for an archive of the 300 KB release rolled back from.
    small_disk(db1, "4m", room="64K")
    proc = deploy(fab, fleet, "rollback")
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    assert archives(db1) == "", db1.sh(f"ls -la {APP}")
    assert no_lock_anywhere(fleet)


def archives(host):
    return host.sh(f"ls -a {APP} | grep -e rolled-back-release -e fake-archive || true").strip()


HOLD_GZIP = textwrap.dedent("""\
    #!/bin/sh
    # gzip, held while /srv/hold-gzip exists: the rollback's archive half made.
    if [ -e /srv/hold-gzip ]; then touch /srv/gzip-held; sleep 60; fi
    exec /srv/.gzip-real "$@"
""")


def test_a_connection_lost_while_a_rollback_archives_leaves_no_half_archive(fab, project, app, repo):
    """The chaos run's rounds 19 and 372 (seed 20261129), replayed: the clean-up removes the archive in the making."""
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "deploy"))
    db1 = fleet["db1"]
    bind_wrapper(fleet, db1, "gzip", HOLD_GZIP)
    db1.sh("touch /srv/hold-gzip")
    proc = popen(project, fleet, "-R", "production", "rollback")
    assert wait_for(lambda: marker(db1, "/srv/gzip-held")), "db1 reached the archive's gzip"
    assert archives(db1) != "", "tar's output is there, half archived"
    db1.crash()  # the connection drops while the archive is half made
    time.sleep(0.5)
    db1.restart()
    db1.sh("rm -f /srv/hold-gzip")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "[db1]" in err, out + err
    assert archives(db1) == "", out + err + db1.sh(f"ls -la {APP}")
    assert no_lock_anywhere(fleet), out + err
    # The rollback went live everywhere before the archive: it stays.
    assert {live(h) for h in fleet.hosts} == {live(db1)}, out + err


HOLD_GC = textwrap.dedent("""\
    #!/bin/sh
    # git, held in deploy:finish's gc while /srv/hold-gc exists: a run stopped in the middle of deploy:finish.
    case "$*" in
      *" gc --auto"*) while [ -e /srv/hold-gc ]; do touch /srv/gc-held; sleep 0.05; done;;
    esac
    exec /srv/.git-real "$@"
""")


def test_a_ctrl_c_during_deploy_finish_leaves_every_host_on_the_new_release(fab, project, app, repo):
    """The chaos run's SIGINT during deploy:finish (seed 11, round 199), replayed with one host at a time:
    the first host is in deploy:finish, the others have not begun it; none is switched back."""
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    for host in fleet.hosts:
        bind_wrapper(fleet, host, "git", HOLD_GC)
        host.sh("touch /srv/hold-gc")
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = popen(project, fleet, "-P", "1", "-R", "production", "deploy")
    try:
        assert wait_for(lambda: any(marker(h, "/srv/gc-held") for h in fleet.hosts)), "a host reached deploy:finish"
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    finally:
        for host in fleet.hosts:
            host.sh("rm -f /srv/hold-gc")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, out + err
    held = [h for h in fleet.hosts if marker(h, "/srv/gc-held")]
    assert len(held) == 1, [h.name for h in held]  # the others had not begun deploy:finish
    new = {live(h) for h in fleet.hosts}
    assert len(new) == 1 and new != {""}, (new, err)
    name = new.pop().split("/")[-1]
    for host in fleet.hosts:
        assert f"deployed as release {name} " in host.sh(f"cat {APP}/revisions.log"), (host.name, err)
        if host not in held:
            assert f"{host.name}: release {name} stays live" in err, err
    assert no_lock_anywhere(fleet), err


# tar -x (the release's export), held, then done: an update that lands late.
HOLD_TAR = held("tar", "*-x*", "hold-tar", "tar-held", "tar-done")


def test_an_update_that_lands_after_the_clean_up_lands_in_a_release_marked_bad(fab, app, repo):
    """The chaos test's round 21 (seed 20261127), replayed: no late update can make a release a rollback would pick."""
    fleet = app()
    ok(deploy(fab, fleet, "deploy"))
    db1 = fleet["db1"]
    old, before = live(db1), releases(db1)
    bind_wrapper(fleet, db1, "tar", HOLD_TAR)
    db1.sh("touch /srv/hold-tar")
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    proc = fab(["--set", "command_timeout=3", "-R", "production", "deploy"], fleet=fleet)
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    assert marker(db1, "/srv/tar-held"), "the update's export was held"
    db1.sh("rm -f /srv/hold-tar")  # the stalled export now goes on, after the clean-up
    assert wait_for(lambda: marker(db1, "/srv/tar-done"), 10)
    time.sleep(0.5)  # the rest of its update: REVISION, links
    late = [r for r in releases(db1) if r not in before]
    assert late, releases(db1)
    for name in late:
        assert marker(db1, f"{APP}/releases/{name}/.fake-bad"), (name, db1.sh(f"ls -la {APP}/releases/{name}"))
    assert live(db1) == old and no_lock_anywhere(fleet)
    # A later deploy and a rollback never go to it.
    db1.sh("umount /usr/bin/tar")
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    ok(deploy(fab, fleet, "deploy"))
    ok(deploy(fab, fleet, "rollback"))
    assert {live(h) for h in fleet.hosts} == {old}


HELD_SWITCH = textwrap.dedent("""\
    #!/bin/bash
    # /bin/sh, holding the first switch command whole (before its first step) while /srv/hold-switch exists.
    if [ "$1" = -c ] && [[ "$2" == *"release exists"* && "$2" == *.current.fake.tmp* ]] \\
        && [ -e /srv/hold-switch ] && mkdir /srv/switch-claimed 2>/dev/null; then
      while [ -e /srv/hold-switch ]; do touch /srv/switch-waiting; sleep 0.05; done
      /srv/.dash-real "$@"; rc=$?; echo $rc > /srv/switch-rc; exit $rc
    fi
    exec /srv/.dash-real "$@"
""")


@pytest.mark.parametrize("task", ["deploy", "rollback"])
def test_a_switch_stalled_before_its_first_step_fails_on_the_fence(fab, app, repo, task):
    """The chaos run's round 368 (seed 20261134), replayed: a late switch must not take the fence down.

    In a rollback only the fence stops it (its target release stays); in a
    deploy the clean-up has also removed the release it would switch to.
    """
    fleet, slow, before = two_releases(fab, app, repo, task)
    bind_wrapper(fleet, slow, "dash", HELD_SWITCH)
    slow.sh("touch /srv/hold-switch")
    proc = fab(["--set", "command_timeout=3", "-R", "production", task], fleet=fleet)
    assert proc.returncode != 0 and "[db1]" in proc.stderr, explain(proc)
    assert marker(slow, "/srv/switch-waiting"), "the switch was held before its first step"
    assert marker(slow, f"{APP}/.current.fake.tmp"), "the clean-up put the fence up"
    slow.sh("rm -f /srv/hold-switch")  # the whole switch now runs, after the clean-up
    assert wait_for(lambda: marker(slow, "/srv/switch-rc"), 10)
    assert slow.sh("cat /srv/switch-rc").strip() != "0", "the late switch failed"
    unchanged_then_the_next_run_clears_the_fence(fab, fleet, slow, task, before, proc)
