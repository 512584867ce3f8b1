"""Many hosts from one command: a progress line per stage, grouped summary, host selection.

One fleet of 30 real sshd hosts serves the whole module (starting it is
the expensive part); each test deploys to its own path.
"""

import json
import re
import uuid

import pytest

from tests.e2e.conftest import explain
from tests.e2e.sshd import Fleet, make_repo

WEB = [f"web{i}" for i in range(1, 21)]
DB = [f"db{i}" for i in range(1, 11)]

FABFILE = '''
from fake.api import env, run, task, after
from fake.tasks.deploy import *

env.roledefs = {{'web': {web!r}, 'db': {db!r}}}
env.deploy_path = {path!r}
env.repo_url = {repo!r}

@task
def hello():
    run("echo hello from " + env.host)
{extra}
'''


@pytest.fixture(scope="module")
def fleet30():
    fleet = Fleet(30, names=WEB + DB)
    yield fleet
    fleet.close()


@pytest.fixture
def scale_app(project, fleet30):
    path = f"/srv/scale-{uuid.uuid4().hex[:8]}"
    repo = project / "repo"
    make_repo(repo)

    def setup(extra=""):
        (project / "fabfile.py").write_text(
            FABFILE.format(web=WEB, db=DB, path=path, repo=str(repo), extra=extra))
        return path

    return setup


def logins(fleet):
    return {h.name: h.accepted_count() for h in fleet.hosts}


def ran_on(proc):
    return sorted(set(re.findall(r"^\[(\w+)\] hello from \1$", proc.stdout, re.M)), key=(WEB + DB).index)


def test_thirty_hosts_piped_show_a_line_per_stage(fab, fleet30, scale_app, project):
    path = scale_app()
    report = project / "report.json"
    proc = fab(["-S", fleet30.ssh_config_path, "-R", "web,db", "--report", report, "deploy"], timeout=180)
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    stages = [ln for ln in lines if ln.startswith("* ")]
    assert [s.split()[1] for s in stages] == ["starting", "started", "updating", "updated", "publishing",
                                              "published", "finishing", "finished"], explain(proc)
    assert all("30/30 ✔ 30 ✗ 0" in s for s in stages), explain(proc)
    assert not [ln for ln in lines if ln.startswith("[")], explain(proc)  # no host lines on screen
    # the banner, a line per stage, the summary grouped by outcome: nothing else
    assert lines[0].startswith("deploying ") and lines[1:9] == stages, explain(proc)
    assert [ln.split()[:2] for ln in lines[9:]] == [["outcome", "hosts"], ["ok", "30"]], explain(proc)
    assert len(json.loads(report.read_text())["hosts"]) == 30  # --report keeps a row per host
    assert all(fleet30[h].sh(f"test -L {path}/current && echo y").strip() == "y" for h in WEB + DB)
    log = (project / "log" / "fake.log").read_text()
    assert all(f"[{h}] exit 0" in log for h in WEB + DB)

    proc = fab(["-S", fleet30.ssh_config_path, "-R", "web,db", "-v", "deploy"], timeout=180)
    assert proc.returncode == 0, explain(proc)
    for host in WEB + DB:  # -v: every host's commands again, as below the threshold
        assert re.search(rf"^\[{host}\] \$ ", proc.stdout, re.M), explain(proc)


def test_verbose_shows_every_host_and_a_failing_host_is_named(fab, fleet30, scale_app):
    scale_app(extra='''
@task
def check():
    if env.host in ('web7', 'db3'):
        run("echo disk full on " + env.host + " >&2; exit 3")
after(updated, check)
''')
    proc = fab(["-S", fleet30.ssh_config_path, "-R", "web,db", "deploy"], timeout=180)
    assert proc.returncode == 1, explain(proc)
    out = proc.stdout + proc.stderr
    assert re.search(r"\[web7\] .*exited 3: disk full on web7", out), explain(proc)
    assert re.search(r"\[db3\] .*exited 3: disk full on db3", out), explain(proc)
    assert re.search(r"^! updated 30/30 ✔ 28 ✗ 2", proc.stdout, re.M), explain(proc)
    assert not re.search(r"^\[web1\]", proc.stdout, re.M), explain(proc)

    proc = fab(["-S", fleet30.ssh_config_path, "-R", "web,db", "-v", "hello"], timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert ran_on(proc) == WEB + DB
    assert re.search(r"^\[db10\] \$ echo hello from db10", proc.stdout, re.M), explain(proc)


def test_exclude_and_patterns_select_what_they_say(fab, fleet30, scale_app):
    scale_app()
    args = ["-S", fleet30.ssh_config_path]
    proc = fab(args + ["-R", "web", "-x", "web2,web1?", "hello"], timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert ran_on(proc) == ["web1", "web3", "web4", "web5", "web6", "web7", "web8", "web9", "web20"]

    proc = fab(args + ["-H", "db[12]", "hello"], timeout=120)  # no -R: among all roles' hosts
    assert ran_on(proc) == ["db1", "db2"], explain(proc)

    proc = fab(args + ["-R", "db", "-H", "*1*", "hello"], timeout=120)  # among the db hosts only
    assert ran_on(proc) == ["db1", "db10"], explain(proc)


@pytest.mark.parametrize("flags, named", [
    (["-H", "app*"], "'app*'"),
    (["-R", "web", "-H", "db*"], "'db*'"),
    (["-R", "web", "-x", "web9?"], "'web9?'"),
])
def test_a_pattern_matching_nothing_fails_before_any_connection(fab, fleet30, scale_app, flags, named):
    scale_app()
    before = logins(fleet30)
    proc = fab(["-S", fleet30.ssh_config_path, *flags, "hello"], timeout=60)
    assert proc.returncode == 1, explain(proc)
    assert named in proc.stderr and "matches none" in proc.stderr, explain(proc)
    assert "Traceback" not in proc.stderr
    assert logins(fleet30) == before
