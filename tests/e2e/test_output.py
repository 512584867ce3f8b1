"""What a person sees: terminal and piped output, -v/-q, the log, dry run, tree, report, secrets."""

import json
import os
import pty
import re
import select
import subprocess
import time

from tests.e2e.conftest import explain, fab_bin
from tests.e2e.sshd import commit
from tests.e2e.test_deploy import APP, app, deploy, live, ok, releases, repo, snapshot  # noqa: F401

ANSI = re.compile(r"\033\[[0-9;]*m")


def run_on_pty(args, cwd, env=None, timeout=60):
    """Run fab with its stdout and stderr on a pseudo-terminal; return (exit code, screen text)."""
    main, child = pty.openpty()
    proc = subprocess.Popen([str(fab_bin), *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=child,
                            stderr=child, env={**os.environ, **(env or {})}, close_fds=True)
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(main)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_terminal_shows_banner_stages_summary_in_colour(project, app, repo):
    fleet = app()
    code, screen = run_on_pty(["-S", str(fleet.ssh_config_path), "-R", "production", "deploy"], project)
    assert code == 0, screen
    assert ANSI.search(screen), "colour on a terminal"
    plain = ANSI.sub("", screen)
    rel = releases(fleet["web1"])[0]
    assert re.search(rf"deploying {re.escape(str(repo))} master \(\w{{7}}\) to production: 3 host\(s\) as release {rel}",
                     plain), plain
    for stage in ("starting", "updating", "publishing", "finishing", "finished"):
        assert re.search(rf"✔ {stage} \(\d+\.\d\ds\)", plain), (stage, plain)
    assert re.search(rf"^web1\s+ok\s+{rel}\s+\w{{12}}\s+\d", plain, re.M), plain


def test_no_colour_with_no_color_or_when_piped(fab, project, app):
    fleet = app()
    code, screen = run_on_pty(["-S", str(fleet.ssh_config_path), "-R", "production", "deploy"], project,
                              env={"NO_COLOR": "1"})
    assert code == 0 and not ANSI.search(screen) and "deploying" in screen, screen
    proc = ok(deploy(fab, fleet, "deploy"))
    assert not ANSI.search(proc.stdout + proc.stderr) and "* updating (" in proc.stdout, explain(proc)


def test_verbose_shows_every_command_quiet_only_the_summary(fab, app):
    fleet = app()
    proc = ok(deploy(fab, fleet, "-v", "deploy"))
    assert "[web1] $ " in proc.stdout and "git -C" in proc.stdout and "mv -T" in proc.stdout, explain(proc)
    quiet = ok(deploy(fab, fleet, "-q", "deploy"))
    assert "deploying" not in quiet.stdout and "* updating" not in quiet.stdout, explain(quiet)
    assert re.search(r"^web1\s+ok\b", quiet.stdout, re.M), explain(quiet)
    assert "$ " not in quiet.stdout


def test_log_file_holds_every_command(fab, project, app):
    fleet = app()
    proc = ok(deploy(fab, fleet, "deploy"))
    log = (project / "log" / "fake.log").read_text()
    for host in ("web1", "web2", "db1"):
        exits = re.findall(rf"\[{host}\] exit (\S+) in \d+\.\d+s", log)
        # probe+lock, update, switch, finish (which also releases the lock: nothing runs after it)
        assert exits == ["0"] * 4, (host, exits, log[-2000:])
    assert "git archive" in log and "mv -T" in log and "revisions.log" in log
    assert f"fab -S {fleet.ssh_config_path} -R production deploy" in log, explain(proc)


def test_log_file_can_move_or_be_off(fab, project, app):
    fleet = app(extra="import os\nenv.log_file = os.environ.get('LOGTO') or None\n")
    target = project / "elsewhere" / "deploys.log"
    ok(fab(["-R", "production", "deploy"], fleet=fleet, env={"LOGTO": str(target)}))
    assert "[web2] exit 0" in target.read_text()
    ok(fab(["-R", "production", "deploy"], fleet=fleet, env={"LOGTO": ""}))
    assert not (project / "log").exists()


def test_dry_run_changes_nothing_and_names_the_plan(fab, app, repo):
    fleet = app(extra="env.keep_releases = 2\n")
    for n in range(2):
        commit(repo, {"app.py": f"print({n})\n"}, f"c{n}")
        ok(deploy(fab, fleet, "deploy"))
    oldest = releases(fleet["web1"])[0]
    sha = commit(repo, {"app.py": "print('next')\n"}, "next")
    before = {h.name: (snapshot(h), h.sh("cd /srv && find . -type f -exec md5sum {} + | sort")) for h in fleet.hosts}
    proc = ok(deploy(fab, fleet, "--dry-run", "deploy"))
    for host in fleet.hosts:
        after = (snapshot(host), host.sh("cd /srv && find . -type f -exec md5sum {} + | sort"))
        assert after == before[host.name], f"{host.name} changed" + explain(proc)
        assert re.search(rf"\[{host.name}\] would create release \d{{14}} from refs/heads/master at {sha[:12]}",
                         proc.stdout), explain(proc)
        assert f"[{host.name}] cleanup would remove: {oldest}" in proc.stdout, explain(proc)
    assert "after: deploy:update" in proc.stdout
    fleet["db1"].sh(f"rm {APP}/shared/config/app.ini")
    proc = ok(deploy(fab, fleet, "--dry-run", "deploy"))
    assert "[db1] would stop: linked file /srv/app/shared/config/app.ini is missing" in proc.stdout, explain(proc)


def test_tree_shows_user_hooks_under_their_stage(fab, app):
    app(extra='''
        @task
        def migrate():
            run("true")
        after(updated, migrate)
    ''')
    proc = ok(fab(["--tree", "deploy"]))
    lines = proc.stdout.splitlines()
    at = lines.index("  updated")
    assert lines[at + 1] == "    after: migrate  (fabfile)", explain(proc)
    assert "    after: deploy:update" in lines


def test_report_json_matches_the_hosts(fab, project, app, repo):
    fleet = app()
    report = project / "report.json"
    ok(deploy(fab, fleet, "--report", str(report), "deploy"))
    data = json.loads(report.read_text())
    assert data["ok"] is True and set(data["hosts"]) == {"web1", "web2", "db1"}
    for host in fleet.hosts:
        entry = data["hosts"][host.name]
        assert entry["outcome"] == "ok"
        assert live(host) == f"releases/{entry['release']}"
        assert host.sh(f"cat {APP}/current/REVISION").strip() == entry["commit"]
        assert set(entry["stages"]) >= {"starting", "updating", "publishing", "finishing"}
    fleet["web2"].sh(f"rm {APP}/shared/config/app.ini")
    proc = deploy(fab, fleet, "--report", str(report), "deploy")
    data = json.loads(report.read_text())
    assert proc.returncode != 0 and data["ok"] is False
    assert data["hosts"]["web2"]["outcome"] == "failed" and "linked file" in data["hosts"]["web2"]["error"]
    assert data["hosts"]["web1"]["outcome"] == "ok"


def test_report_names_the_releases_keep_releases_removed(fab, project, app, repo):
    fleet = app()
    report = project / "report.json"
    ok(deploy(fab, fleet, "--set", "keep_releases=1", "--report", str(report), "deploy"))
    first = {h.name: releases(h) for h in fleet.hosts}
    assert all(json.loads(report.read_text())["hosts"][h]["removed_releases"] == [] for h in first)
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    ok(deploy(fab, fleet, "--set", "keep_releases=1", "--report", str(report), "deploy"))  # the live one stays
    commit(repo, {"app.py": "print('v3')\n"}, "v3")
    ok(deploy(fab, fleet, "--set", "keep_releases=1", "--report", str(report), "deploy"))
    data = json.loads(report.read_text())
    for host in fleet.hosts:
        gone = data["hosts"][host.name]["removed_releases"]
        assert gone == first[host.name] and gone[0] not in releases(host), (host.name, gone, releases(host))


def test_secrets_never_appear_in_output_or_log(fab, project, app):
    secret = "s3cr3t-Pa55word"
    fleet = app(extra=f'''
        env.secret_keys = ['db_password']
        env.roledefs['production']['db_password'] = {secret!r}
        @task
        def show_config():
            run("echo connecting with " + env.db_password)
            run("echo " + env.db_password + " >&2; exit 4")
        after(updated, show_config)
    ''')
    proc = fab(["-R", "production", "-v", "deploy"], fleet=fleet)
    assert proc.returncode != 0, explain(proc)
    everything = proc.stdout + proc.stderr + (project / "log" / "fake.log").read_text()
    assert secret not in everything
    assert "connecting with ********" in proc.stdout and "********" in proc.stderr, explain(proc)
