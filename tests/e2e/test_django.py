"""examples/django deployed with fake.tasks.python, .django and .gunicorn to three real sshd hosts.

Django and gunicorn are installed on the hosts from a local wheelhouse
(filled once from the package index, then reused: no network while the
tests run). The hosts share 127.0.0.1, so each has its own gunicorn port,
set per role: ``fab -R web1,web2,web3``. Every host logs the commands it
runs (a ForceCommand wrapper), so "no pip on a second deploy" and "migrate
on one host" are read from the hosts' own logs. A load loop sends requests
to every host's gunicorn while deploys and rollbacks run and reads the
revision each answer names.

The tests share one fleet and one deployed app, in file order: each starts
from where the one before left the hosts.
"""

import contextlib
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import explain, run_fab
from tests.e2e.sshd import Fleet, _free_ports, _git, commit, ensure_test_user
from tests.e2e.test_rolling import CMDLOG, WRAPPER, commands

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django"
APP = "/srv/app"
HOSTS = ["web1", "web2", "web3"]
WHEEL_CACHE = Path("/var/cache/fake-tests")

FABFILE = '''
from fake.api import env
from fake.tasks.django import *
from fake.tasks.gunicorn import *

env.roledefs = {roles!r}
env.deploy_path = {app!r}
env.repo_url = {repo!r}
env.linked_dirs = ['var']
env.linked_files = ['.env']
env.pip_options = ['--no-index', '--find-links', {wheels!r}]
env.gunicorn_app = 'mysite.wsgi:application'
env.gunicorn_workers = 2
env.healthcheck_timeout = 20
'''


def fill_wheelhouse():
    """Django and gunicorn wheels in a directory the hosts can read, downloaded once per requirements."""
    digest = hashlib.sha256((EXAMPLE / "requirements.txt").read_bytes()).hexdigest()[:12]
    path = WHEEL_CACHE / f"wheels-{digest}"
    if not (path / ".complete").exists():
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=WHEEL_CACHE))
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                               "--only-binary=:all:", "-d", str(tmp), "-r", str(EXAMPLE / "requirements.txt")],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"filling the wheelhouse needs the package index once:\n{proc.stderr}"
        (tmp / ".complete").write_text("")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    for p in [WHEEL_CACHE, path, *path.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return path


def make_app_repo(repo):
    """examples/django (without its fabfile) as a git repository the hosts can clone; returns its path."""
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "fabfile.py"))
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "config", "user.name", "Fake Test")
    _git(repo, "config", "user.email", "fake-test@example.invalid")
    commit(repo, {}, "the example", _pw=ensure_test_user())
    return repo


def logging_fleet(workdir, names):
    """Hosts that log each command they run in /srv/commands.log (test_rolling's wrapper), made ready for it."""
    wrapper = workdir / "log-command"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    fleet = Fleet(len(names), workdir=workdir / "fleet", names=names, extra_config=[f"ForceCommand {wrapper}"],
                  sftp_subsystem="/usr/lib/openssh/sftp-server")
    for host in fleet.hosts:
        host.sh(f"touch {CMDLOG} && chown fake-test {CMDLOG}")
    return fleet


@pytest.fixture(scope="module")
def wheelhouse():
    return fill_wheelhouse()


@pytest.fixture(scope="module")
def site(wheelhouse):
    """Three hosts, the example app in a git repository, and its fabfile; gunicorn is stopped by the fleet's close."""
    workdir = Path(tempfile.mkdtemp(prefix="fake-django-"))
    workdir.chmod(0o755)
    fleet = logging_fleet(workdir, HOSTS)
    try:
        repo = make_app_repo(workdir / "repo")
        ports = dict(zip(HOSTS, _free_ports(3)))
        roles = {name: {"hosts": [name], "gunicorn_bind": f"127.0.0.1:{port}",
                        "healthcheck": f"http://127.0.0.1:{port}/health"} for name, port in ports.items()}
        roles["db"] = ["web2"]
        project = workdir / "project"
        project.mkdir(mode=0o755)
        (project / "fabfile.py").write_text(FABFILE.format(roles=roles, app=APP, repo=str(repo),
                                                           wheels=str(wheelhouse)))
        for host in fleet.hosts:
            host.sh(f"mkdir -p {APP}/shared && echo 'SECRET_KEY=test-{host.name}' > {APP}/shared/.env "
                    f"&& touch {CMDLOG} && chown -R fake-test /srv")
        yield Site(fleet, repo, project, ports)
    finally:
        fleet.close()
        shutil.rmtree(workdir, ignore_errors=True)


class Site:
    def __init__(self, fleet, repo, project, ports):
        self.fleet, self.repo, self.project, self.ports = fleet, repo, project, ports
        self.first = None  # the first deploy's process and log marks, for the test that checks it

    def fab(self, *args, timeout=300):
        return run_fab(["-R", ",".join(HOSTS), *args], self.project, fleet=self.fleet, timeout=timeout)

    def popen(self, *args):
        cmd = [str(Path(sys.executable).parent / "fab"), "-S", str(self.fleet.ssh_config_path),
               "-R", ",".join(HOSTS), *args]
        return subprocess.Popen(cmd, cwd=self.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def head(self):
        return _git(self.repo, "rev-parse", "HEAD")

    def get(self, host, path="/"):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[host]}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode().strip()

    def serving(self):
        return {h: self.get(h)[1] for h in HOSTS}

    def marks(self):
        return {h.name: len(commands(h)) for h in self.fleet.hosts}

    def since(self, marks):
        return {h.name: [c[2] for c in commands(h)[marks[h.name]:]] for h in self.fleet.hosts}

    def masters(self, host):
        """PIDs of gunicorn masters bound to this host's port (a master's parent is not a gunicorn)."""
        rows = [line.split(None, 2) for line in self.fleet[host].sh("ps -ww -eo pid=,ppid=,args=").splitlines()]
        mine = {r[0]: r for r in rows if len(r) == 3 and "gunicorn" in r[2] and f":{self.ports[host]}" in r[2]}
        return sorted(pid for pid, r in mine.items() if r[1] not in mine)


def ok(proc):
    assert proc.returncode == 0, explain(proc)
    return proc


class Load:
    """Requests to every host's gunicorn in a loop until stopped (at most 4000 per host, 240 s)."""

    def __init__(self, site):
        self.site, self.stop_flag, self.seen = site, threading.Event(), {h: [] for h in HOSTS}
        self.threads = [threading.Thread(target=self._loop, args=(h,), daemon=True) for h in HOSTS]

    def _loop(self, host):
        end = time.monotonic() + 240
        for _ in range(4000):
            if self.stop_flag.is_set() or time.monotonic() > end:
                return
            try:
                self.seen[host].append(self.site.get(host))
            except (urllib.error.URLError, OSError) as e:
                self.seen[host].append((getattr(e, "code", None) or type(e).__name__, str(e)))
            time.sleep(0.02)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def failures(self, host):
        return [s for s in self.seen[host] if s[0] != 200]

    def revisions(self, host):
        """The revisions this host answered with, runs of the same one collapsed: ['a', 'b', 'a']."""
        out = []
        for status, body in self.seen[host]:
            if status == 200 and (not out or out[-1] != body):
                out.append(body)
        return out


def deploy_a_change(site, path, change, message, *fab_args, load=True):
    """Commit ``change(text)`` to ``path`` and deploy it (under the load loop), then commit the old text back."""
    old = (site.repo / path).read_text()
    commit(site.repo, {path: change(old)}, message)
    try:
        with Load(site) if load else contextlib.nullcontext() as loop:
            proc = site.fab(*fab_args, "deploy")
    finally:
        commit(site.repo, {path: old}, f"{path} as it was")
    return proc, loop


@pytest.fixture(scope="module")
def deployed(site):
    marks = site.marks()
    proc = site.fab("deploy")
    site.first = (proc, marks, site.head())
    ok(proc)
    return site


def test_first_deploy_builds_an_env_per_host_migrates_once_and_serves(deployed):
    site = deployed
    proc, marks, revision = site.first
    ran = site.since(marks)
    for host in site.fleet.hosts:
        pips = [c for c in ran[host.name] if "pip install" in c]
        assert len(pips) == 1, (host.name, ran[host.name])
        assert len(host.sh(f"ls {APP}/shared/venvs").split()) == 1, host.name
        assert host.sh(f"readlink {APP}/current/.venv").startswith(f"{APP}/shared/venvs/")
        assert host.sh(f"test -f {APP}/current/staticfiles/pages/site.css && echo yes").strip() == "yes", host.name
        assert sum("collectstatic" in c for c in ran[host.name]) == 1, host.name
        assert site.get(host.name) == (200, revision), explain(proc)
        assert len(site.masters(host.name)) == 1
    migrated = {h.name for h in site.fleet.hosts if any("migrate --noinput" in c for c in ran[h.name])}
    assert migrated == {"web2"}, ran
    assert site.fleet["web2"].sh(f"cat {APP}/shared/var/migrations.log").splitlines() == ["0001_initial applied"]
    for name in ["web1", "web3"]:
        assert site.fleet[name].sh(f"test -e {APP}/shared/var/migrations.log && echo y || echo n").strip() == "n"


def test_a_second_deploy_with_the_same_requirements_runs_no_pip(deployed):
    site = deployed
    venvs = {h.name: h.sh(f"ls {APP}/shared/venvs") for h in site.fleet.hosts}
    commit(site.repo, {"pages/static/pages/site.css": "body { color: black; }\n"}, "v2: a style change")
    marks = site.marks()
    proc = ok(site.fab("deploy"))
    ran = site.since(marks)
    for host in site.fleet.hosts:
        assert not [c for c in ran[host.name] if "pip" in c.split()], (host.name, ran[host.name])
        assert host.sh(f"ls {APP}/shared/venvs") == venvs[host.name]
        assert site.get(host.name) == (200, site.head()), explain(proc)
    # A plain deploy is 4 commands per host; the environment adds one (no pip), then collectstatic,
    # the gunicorn reload and the health check; migrate on web2 only.
    counts = {name: len(cmds) for name, cmds in ran.items()}
    assert counts == {"web1": 8, "web2": 9, "web3": 8}, ran
    assert site.fleet["web2"].sh(f"cat {APP}/shared/var/migrations.log").splitlines() == ["0001_initial applied"]


def test_no_request_fails_through_a_deploy_and_a_rollback(deployed):
    site = deployed
    old = site.head()
    commit(site.repo, {"pages/views.py": (site.repo / "pages/views.py").read_text() + "\n# v3\n"}, "v3")
    new = site.head()
    with Load(site) as load:
        time.sleep(1)
        ok(site.fab("deploy"))
        time.sleep(1)
        ok(site.fab("rollback"))
        time.sleep(1)
    for host in HOSTS:
        assert len(load.seen[host]) > 20, load.seen[host][:5]
        assert load.failures(host) == [], (host, load.failures(host)[:5])
        assert load.revisions(host) == [old, new, old], (host, load.revisions(host))
        assert len(site.masters(host)) == 1, host


def test_the_canary_serves_the_new_revision_while_the_others_serve_the_old(deployed):
    site = deployed
    old = site.serving()["web1"]
    commit(site.repo, {"pages/views.py": (site.repo / "pages/views.py").read_text() + "\n# v4\n"}, "v4")
    new = site.head()
    with Load(site) as load:
        proc = site.popen("--set", "canary=1,batch_wait=4", "deploy")
        for line in proc.stdout:
            if line.startswith("batch 1/2"):
                break
        during = site.serving()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert during == {"web1": new, "web2": old, "web3": old}, during
    for host in HOSTS:
        assert load.failures(host) == [], (host, load.failures(host)[:5])
        assert load.revisions(host)[-2:] == [old, new], (host, load.revisions(host))
    assert site.serving() == {h: new for h in HOSTS}


def test_an_app_that_cannot_start_is_never_served(deployed):
    site = deployed
    before = site.serving()
    proc, load = deploy_a_change(site, "mysite/wsgi.py", lambda text: text + "\ndef broken(:\n", "a syntax error",
                                 "--set", "canary=1")
    assert proc.returncode == 1, explain(proc)
    assert "[web1]" in proc.stderr and "gunicorn" in proc.stderr, explain(proc)
    assert site.serving() == before
    for host in HOSTS:
        assert load.failures(host) == [], (host, load.failures(host)[:5])
        assert load.revisions(host) == [before[host]], (host, load.revisions(host))
        assert len(site.masters(host)) == 1, host


def test_a_health_check_that_fails_after_the_reload_puts_the_old_code_back(deployed):
    site = deployed
    before = site.serving()

    def sick(views):
        assert 'return HttpResponse("ok\\n"' in views
        return views.replace('return HttpResponse("ok\\n"', 'return HttpResponse("sick\\n", status=503) or HttpResponse("ok\\n"')

    proc, load = deploy_a_change(site, "pages/views.py", sick, "a health page that fails",
                                 "--set", "canary=1,healthcheck_timeout=3")
    assert proc.returncode == 1, explain(proc)
    assert "did not answer 2xx" in proc.stderr and "503" in proc.stderr, explain(proc)
    assert site.serving() == before
    for host in ["web2", "web3"]:  # never switched
        assert load.failures(host) == [], (host, load.failures(host)[:5])
        assert load.revisions(host) == [before[host]], (host, load.revisions(host))
    assert load.failures("web1") == []
    assert load.revisions("web1")[-1] == before["web1"]
    assert len(site.masters("web1")) == 1


def test_a_failing_pip_install_fails_before_anything_is_live(deployed):
    site = deployed
    before = {h.name: (h.sh(f"readlink {APP}/current"), h.sh(f"ls {APP}/shared/venvs")) for h in site.fleet.hosts}
    proc, _ = deploy_a_change(site, "requirements.txt", lambda text: text + "no-such-package-fake-test==1.0\n",
                              "a requirement that does not exist", load=False)
    assert proc.returncode == 1, explain(proc)
    named = re.search(r"\[([^\]]*)\] python:venv build: pip install exited 1", proc.stderr)
    assert named and sorted(named.group(1).split(", ")) == HOSTS, explain(proc)
    assert "no-such-package-fake-test" in proc.stderr and "pip install" in proc.stderr, explain(proc)
    after = {h.name: (h.sh(f"readlink {APP}/current"), h.sh(f"ls {APP}/shared/venvs")) for h in site.fleet.hosts}
    assert after == before


def test_fake_init_django_writes_a_fabfile_with_the_three_libraries(site):
    folder = Path(tempfile.mkdtemp(prefix="fake-init-django-"))
    try:
        proc = run_fab(["init", "--django"], folder, program=[str(Path(sys.executable).parent / "fake")])
        assert proc.returncode == 0, explain(proc)
        listing = run_fab(["--list"], folder)
        assert listing.returncode == 0, explain(listing)
        for name in ["deploy", "rollback", "python:venv", "django:migrate", "django:collectstatic", "gunicorn:reload"]:
            assert name in listing.stdout, explain(listing)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
