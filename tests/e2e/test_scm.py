"""Strategies end to end: ``scm = 'copy'`` and the git options, against real sshd hosts.

Hosts are made to lack things the way a real fleet might: git is replaced
by a tripwire (a script that records being called and fails), the
repository's directory is hidden behind an empty tmpfs, and a slow git
wrapper records when each host fetches.
"""

import http.server
import os
import re
import shlex
import socket
import subprocess
import textwrap
import threading
import time

import pytest

from tests.e2e.conftest import explain
from tests.e2e.sshd import TEST_USER, Fleet, commit, make_repo
from tests.e2e.test_deploy import APP, live, ok, releases, sha_of, snapshot

FABFILE = '''
from fake.api import env, run, task
from fake.tasks.deploy import *

env.roledefs = {{'production': {{'hosts': {hosts!r}}}}}
env.deploy_path = {deploy_path!r}
{extra}
'''


def write_fabfile(where, hosts, extra=""):
    (where / "fabfile.py").write_text(FABFILE.format(hosts=list(hosts), deploy_path=APP,
                                                     extra=textwrap.dedent(extra)))


def deploy(fab, fleet, *args):
    return fab(["-R", "production", *args, "deploy"], fleet=fleet)


def git(repo, *args):
    """git as root on a root-owned repository (the controller's own checkout)."""
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="Fake Test", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="Fake Test", GIT_COMMITTER_EMAIL="t@example.invalid")
    proc = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def local_repo(path, files):
    """A repository owned by root, as a developer's checkout would be owned by them."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "master")
    return local_commit(path, files, "first")


def local_commit(path, files, message):
    for rel, content in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD")


def cat(host, path):
    return host.sh(f"cat {shlex.quote(path)}")


def uploads_left(host):
    return host.sh(f"ls -a {APP} 2>/dev/null | grep -e '^.fake-' || true").split()


def hide_git(host, workdir):
    """Make git unusable for every login to ``host``: a tripwire in its place, git-core emptied."""
    tripwire = workdir / "git-tripwire"
    tripwire.write_text("#!/bin/sh\necho \"git $*\" >> /srv/git-was-called\n"
                        "echo 'git: not installed on this host' >&2\nexit 127\n")
    tripwire.chmod(0o755)
    host.sh(f"mount --bind {tripwire} /usr/bin/git && mount -t tmpfs -o mode=0755 tmpfs /usr/lib/git-core")
    assert host.sh("git --version >/dev/null 2>&1; echo $?").strip() == "127"
    host.sh("rm -f /srv/git-was-called")


# -- copy ----------------------------------------------------------------------------------
def test_copy_deploys_the_fabfiles_commit_to_hosts_without_git(fab, project, fleet3):
    """No repo_url: the git repository the fabfile lives in; committed content only, excludes applied."""
    write_fabfile(project, ["web1", "web2"], extra="""
        env.scm = 'copy'
        env.copy_exclude = ['*.log', 'docs', '/secret']
    """)
    sha = local_repo(project, {"app.py": "print('v1')\n", "docs/guide.md": "x", "lib/docs/keep.txt": "nested",
                               "debug.log": "x", "secret/key": "k", "lib/secret/ok.txt": "kept"})
    (project / "uncommitted.txt").write_text("not committed")
    for host in ("web1", "web2"):
        hide_git(fleet3[host], fleet3.workdir)
        fleet3[host].sh(f"mount -t tmpfs -o mode=0700 tmpfs {shlex.quote(str(project))}")  # the repo is not there
        assert fleet3[host].sh(f"ls -A {shlex.quote(str(project))}") == ""
    proc = ok(deploy(fab, fleet3))
    assert "master" in proc.stdout, explain(proc)
    for name in ("web1", "web2"):
        host = fleet3[name]
        rel = f"{APP}/current"
        assert cat(host, f"{rel}/REVISION").strip() == sha
        assert cat(host, f"{rel}/app.py") == "print('v1')\n"
        files = sorted(host.sh(f"cd {rel}/ && find . -type f | sort").split())
        assert files == ["./REVISION", "./app.py", "./fabfile.py", "./lib/secret/ok.txt"], files
        assert host.sh("test -e /srv/git-was-called && cat /srv/git-was-called || echo never").strip() == "never"
        assert uploads_left(host) == []
        log = cat(host, f"{APP}/revisions.log")
        assert re.fullmatch(rf"Branch master \(at {sha}\) deployed as release \d{{14}} by \S+\n", log), log
    assert releases(fleet3["db1"]) == []


def test_copy_upload_rides_on_the_update_command_without_sftp(fab, project):
    """The archive goes over the update command's stdin: a host with no sftp subsystem deploys in 4 commands."""
    with Fleet(1, names=["web1"], sftp_subsystem="/bin/false") as fleet:
        write_fabfile(project, ["web1"], extra="""
            env.scm = 'copy'
            env.copy_dir = 'site'
        """)
        (project / "site").mkdir()
        (project / "site" / "index.html").write_bytes(os.urandom(300_000))  # several windows' worth
        proc = ok(deploy(fab, fleet))
        host = fleet["web1"]
        assert host.sh(f"cmp {APP}/current/index.html {shlex.quote(str(project / 'site' / 'index.html'))}"
                       " && echo same").strip() == "same"
        assert uploads_left(host) == []
        log = (project / "log" / "fake.log").read_text()
        assert len(re.findall(r"\[web1\] exit 0 in", log)) == 4, explain(proc)


def test_copy_directory_after_a_build_command(fab, project, fleet3):
    write_fabfile(project, ["web1", "db1"], extra="""
        env.scm = 'copy'
        env.copy_dir = 'build'
        env.copy_exclude = ['*.map']
        env.build_command = "rm -rf build && mkdir -p build/js && cat version > build/index.html && " \\
                            "echo map > build/js/app.js.map && echo js > build/js/app.js && ln -s index.html build/home"
    """)
    (project / "version").write_text("v1\n")
    ok(deploy(fab, fleet3))
    first = cat(fleet3["web1"], f"{APP}/current/REVISION").strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first), first
    for name in ("web1", "db1"):
        host = fleet3[name]
        assert cat(host, f"{APP}/current/index.html") == "v1\n"
        assert host.sh(f"readlink {APP}/current/home").strip() == "index.html"
        assert sorted(host.sh(f"cd {APP}/current/js && ls").split()) == ["app.js"]
        assert cat(host, f"{APP}/current/REVISION").strip() == first
        assert re.search(rf"^Directory build \(at {first}\) deployed", cat(host, f"{APP}/revisions.log"), re.M)
    time.sleep(1.1)  # new mtimes, same content: same revision
    ok(deploy(fab, fleet3))
    assert cat(fleet3["web1"], f"{APP}/current/REVISION").strip() == first
    (project / "version").write_text("v2\n")
    ok(deploy(fab, fleet3))
    assert cat(fleet3["db1"], f"{APP}/current/index.html") == "v2\n"
    assert cat(fleet3["db1"], f"{APP}/current/REVISION").strip() != first


def test_failing_build_command_changes_no_host(fab, project, fleet3):
    write_fabfile(project, ["web1", "web2", "db1"], extra="""
        env.scm = 'copy'
        env.copy_dir = 'build'
        env.build_command = "mkdir -p build && echo 'compiler says no' >&2 && exit 3"
    """)
    before = {h.name: snapshot(h) for h in fleet3.hosts}
    proc = deploy(fab, fleet3)
    assert proc.returncode != 0, explain(proc)
    assert "env.build_command" in proc.stderr and "exit 3" in proc.stderr, explain(proc)
    assert "compiler says no" in proc.stderr and "Traceback" not in proc.stderr, explain(proc)
    for host in fleet3.hosts:
        assert snapshot(host) == before[host.name], host.name
        assert host.sh("test -e /srv/app/deploy.lock && echo locked || echo free").strip() == "free"


@pytest.mark.parametrize("damage, needle", [
    ("printf X | dd of={remote} bs=1 seek=60 conv=notrunc", r"verify upload sha256 .*it changed on the way"),
    ("printf XY >> {remote}", r"verify upload size .*has \d+ bytes, expected"),
])
def test_corrupted_upload_is_caught_before_unpacking(fab, project, fleet3, damage, needle):
    """A strategy object (a Copy subclass) damages web2's upload between receiving and verification."""
    write_fabfile(project, ["web1", "web2", "db1"], extra=f"""
        import os
        from fake.scm.copy import Copy

        class DamagingCopy(Copy):
            def upload(self, script, target, local, remote):
                super().upload(script, target, local, remote)
                if os.environ.get("DAMAGE") and target.host == "web2":
                    script.add("damage", {damage!r}.format(remote=remote))

        env.scm = DamagingCopy()
        env.copy_dir = 'site'
    """)
    (project / "site").mkdir()
    (project / "site" / "index.html").write_text("hello\n" * 200)
    ok(deploy(fab, fleet3))
    (project / "site" / "index.html").write_text("changed\n" * 200)
    before = {h.name: snapshot(h) for h in fleet3.hosts}
    proc = fab(["-R", "production", "deploy"], fleet=fleet3, env={"DAMAGE": "1"})
    assert proc.returncode != 0, explain(proc)
    assert "deploy:update failed on 1 of 3 hosts" in proc.stderr, explain(proc)
    assert re.search(r"\[web2\] deploy:update: " + needle, proc.stderr), explain(proc)
    for host in fleet3.hosts:
        assert snapshot(host) == before[host.name], host.name  # nothing published, no release, no upload left
        assert cat(host, f"{APP}/current/index.html") == "hello\n" * 200


# -- git options ---------------------------------------------------------------------------
@pytest.fixture
def repo(project):
    path = project / "repo"
    make_repo(path)
    return path


def test_tag_and_commit_ids_deploy_those_commits(fab, project, fleet3, repo):
    hosts = ["web1", "web2"]
    write_fabfile(project, hosts, extra=f"env.repo_url = {str(repo)!r}\n")
    c1 = sha_of(repo, "master")
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x",
                    "tag", "-a", "v1.4.0", "-m", "release 1.4.0"], check=True)
    c2 = commit(repo, {"app.py": "print('c2')\n"}, "c2")
    c3 = commit(repo, {"app.py": "print('c3')\n"}, "c3")

    # an abbreviated id of a branch tip, before any mirror exists
    proc = ok(deploy(fab, fleet3, "--set", f"branch={c3[:8]}"))
    assert f"commit {c3[:8]}" in proc.stdout, explain(proc)
    for name in hosts:
        assert cat(fleet3[name], f"{APP}/current/REVISION").strip() == c3

    proc = ok(deploy(fab, fleet3, "--set", "branch=v1.4.0"))
    assert "tag v1.4.0" in proc.stdout, explain(proc)
    for name in hosts:
        assert cat(fleet3[name], f"{APP}/current/REVISION").strip() == c1
        assert cat(fleet3[name], f"{APP}/current/app.py") == "print('hello from fake')\n"
        assert f"Tag v1.4.0 (at {c1}) deployed" in cat(fleet3[name], f"{APP}/revisions.log")

    ok(deploy(fab, fleet3, "--set", f"branch={c2}"))  # a full id that is no tip
    for name in hosts:
        assert cat(fleet3[name], f"{APP}/current/REVISION").strip() == c2
        assert f"Commit {c2} (at {c2}) deployed" in cat(fleet3[name], f"{APP}/revisions.log")
    ok(deploy(fab, fleet3, "--set", f"branch={c1[:7]}"))  # abbreviated, found in the mirror
    assert cat(fleet3["web2"], f"{APP}/current/REVISION").strip() == c1

    proc = deploy(fab, fleet3, "--set", "branch=0000000")
    assert proc.returncode != 0 and "commit '0000000' not found" in proc.stderr, explain(proc)


def test_repo_tree_deploys_only_that_directory(fab, project, fleet3, repo):
    sha = commit(repo, {"services/api/main.py": "api\n", "services/api/conf/a.ini": "a\n",
                        "services/web/index.html": "web\n"}, "monorepo")
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(repo)!r}\nenv.repo_tree = 'services/api'\n")
    ok(deploy(fab, fleet3))
    host = fleet3["web1"]
    files = sorted(host.sh(f"cd {APP}/current/ && find . -type f | sort").split())
    assert files == ["./REVISION", "./conf/a.ini", "./main.py"], files
    assert cat(host, f"{APP}/current/REVISION").strip() == sha
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(repo)!r}\nenv.repo_tree = 'services/nope'\n")
    proc = deploy(fab, fleet3)
    assert proc.returncode != 0 and "repo_tree services/nope" in proc.stderr, explain(proc)
    assert len(releases(host)) == 1


@pytest.fixture
def git_daemon(project):
    """``git daemon`` on 127.0.0.1 serving ``project/served``; stopped by its handle."""
    served = project / "served"
    served.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
                             f"--port={port}", f"--base-path={served}", str(served)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.05)
    yield served, f"git://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_submodules_are_included_at_their_recorded_commit(fab, project, fleet3, repo, git_daemon):
    served, base_url = git_daemon
    lib = served / "lib.git"
    recorded = local_repo(lib, {"lib.py": "VERSION = 1\n"})
    git(repo, "-c", "safe.directory=*", "submodule", "add", "-q", f"{base_url}/lib.git", "vendor/lib")
    git(repo, "-c", "safe.directory=*", "commit", "-q", "-m", "add lib")
    subprocess.run(["chown", "-R", TEST_USER, str(repo)], check=True)
    local_commit(lib, {"lib.py": "VERSION = 2\n"}, "newer, not recorded")
    write_fabfile(project, ["web1", "web2"], extra=f"env.repo_url = {str(repo)!r}\nenv.git_submodules = True\n")
    ok(deploy(fab, fleet3))
    for name in ("web1", "web2"):
        host = fleet3[name]
        assert cat(host, f"{APP}/current/vendor/lib/lib.py") == "VERSION = 1\n"
        assert cat(host, f"{APP}/current/app.py") == "print('hello from fake')\n"
        assert host.sh(f"find {APP}/current -name .git | wc -l").strip() == "0"
        assert uploads_left(host) == []
    assert recorded != git(lib, "rev-parse", "HEAD")
    # without the option the submodule directory is empty, as git archive leaves it
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(repo)!r}\n")
    ok(deploy(fab, fleet3))
    assert fleet3["web1"].sh(f"ls -A {APP}/current/vendor/lib").strip() == ""


def test_shallow_mirror_works_for_the_next_deploy(fab, project, fleet3, repo):
    for n in range(5):
        commit(repo, {"app.py": f"print({n})\n"}, f"c{n}")
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(repo)!r}\nenv.git_shallow_clone = 1\n")
    ok(deploy(fab, fleet3))
    host = fleet3["web1"]
    mirror = f"git -c safe.directory='*' --git-dir={APP}/repo"
    assert host.sh(f"{mirror} rev-parse --is-shallow-repository").strip() == "true"
    assert host.sh(f"{mirror} rev-list --count master").strip() == "1"
    new = commit(repo, {"app.py": "print('next')\n"}, "next")
    ok(deploy(fab, fleet3))
    assert cat(host, f"{APP}/current/REVISION").strip() == new
    assert cat(host, f"{APP}/current/app.py") == "print('next')\n"
    assert host.sh(f"{mirror} rev-list --count master").strip() == "1"
    # dropping the setting brings the whole history back
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(repo)!r}\n")
    ok(deploy(fab, fleet3))
    assert host.sh(f"{mirror} rev-parse --is-shallow-repository").strip() == "false"
    assert int(host.sh(f"{mirror} rev-list --count master")) == 7


def _fetch_intervals(host):
    spans, starts = [], {}
    for line in host.sh("cat /srv/fetch-times 2>/dev/null || true").splitlines():
        kind, pid, stamp = line.split()
        if kind == "start":
            starts[pid] = float(stamp)
        else:
            spans.append((starts.pop(pid), float(stamp)))
    return spans


def _most_at_once(spans):
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("limit", [2, None])
def test_git_max_concurrent_limits_hosts_fetching_at_once(fab, project, make_fleet, repo, limit):
    """Two at a time with the limit; without it (default 10) all six overlap, so the check can fail."""
    fleet = make_fleet(6)
    wrapper = fleet.workdir / "git-wrapper"
    wrapper.write_text(textwrap.dedent("""\
        #!/bin/sh
        case " $* " in
          *" fetch "*|*" clone "*)
            echo "start $$ $(date +%s.%N)" >> /srv/fetch-times
            sleep 0.6
            /usr/lib/git-core/git "$@"; rc=$?
            echo "end $$ $(date +%s.%N)" >> /srv/fetch-times
            exit $rc;;
        esac
        exec /usr/lib/git-core/git "$@"
    """))
    wrapper.chmod(0o755)
    for host in fleet.hosts:
        host.sh(f"mount --bind {wrapper} /usr/bin/git")
    extra = f"env.repo_url = {str(repo)!r}\n" + (f"env.git_max_concurrent = {limit}\n" if limit else "")
    write_fabfile(project, [h.name for h in fleet.hosts], extra=extra)
    for round_ in range(2):  # a first deploy clones, the second fetches
        for host in fleet.hosts:
            host.sh("rm -f /srv/fetch-times")
        ok(deploy(fab, fleet))
        spans = [span for host in fleet.hosts for span in _fetch_intervals(host)]
        assert len(spans) == 6, spans
        peak = _most_at_once(spans)
        assert peak == 2 if limit else peak > 2, (round_, peak, sorted(spans))


def test_git_max_concurrent_slot_is_free_once_the_fetch_is_done(fab, project, make_fleet, repo):
    """One slot, a slow export: the second host fetches while the first is still exporting.

    Were the slot held for the whole update command, the second fetch would
    start only after the first host's export ended.
    """
    fleet = make_fleet(2)
    git = fleet.workdir / "git-wrapper"
    git.write_text(textwrap.dedent("""\
        #!/bin/sh
        case " $* " in
          *" fetch "*|*" clone "*) echo "fetch-start $(date +%s.%N)" >> /srv/times;;
        esac
        exec /usr/lib/git-core/git "$@"
    """))
    tar = fleet.workdir / "tar-wrapper"
    tar.write_text(textwrap.dedent("""\
        #!/bin/sh
        case " $* " in
          *" -x "*) sleep 1.5; /srv/bin/tar "$@"; rc=$?; echo "export-end $(date +%s.%N)" >> /srv/times; exit $rc;;
        esac
        exec /srv/bin/tar "$@"
    """))
    for path in (git, tar):
        path.chmod(0o755)
    for host in fleet.hosts:
        host.sh(f"mkdir -p /srv/bin && touch /srv/bin/tar && mount --bind /usr/bin/tar /srv/bin/tar"
                f" && mount --bind {tar} /usr/bin/tar && mount --bind {git} /usr/bin/git")
    write_fabfile(project, [h.name for h in fleet.hosts],
                  extra=f"env.repo_url = {str(repo)!r}\nenv.git_max_concurrent = 1\n")
    for round_ in range(2):  # a first deploy clones, the second fetches
        for host in fleet.hosts:
            host.sh("rm -f /srv/times")
        ok(deploy(fab, fleet))
        seen = {}
        for host in fleet.hosts:
            for line in host.sh("cat /srv/times").splitlines():
                kind, stamp = line.split()
                seen.setdefault(kind, []).append(float(stamp))
        assert len(seen["fetch-start"]) == 2 and len(seen["export-end"]) == 2, seen
        assert max(seen["fetch-start"]) < min(seen["export-end"]), (round_, seen)


class _NeedsPassword(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def password_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NeedsPassword)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/private/repo.git"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("kind", ["http credentials", "unknown ssh host key"])
def test_git_never_prompts(fab, project, fleet3, password_server, kind):
    url = password_server if kind == "http credentials" else f"ssh://git@127.0.0.1:{fleet3['db1'].port}/repo.git"
    write_fabfile(project, ["web1", "web2"], extra=f"env.repo_url = {url!r}\n")
    before = {h.name: snapshot(h) for h in fleet3.hosts}
    started = time.monotonic()
    proc = fab(["-R", "production", "deploy"], fleet=fleet3, timeout=30)
    took = time.monotonic() - started
    assert proc.returncode != 0, explain(proc)
    assert took < 10, f"took {took:.1f}s: something waited for input"
    needle = "terminal prompts disabled" if kind == "http credentials" else "Host key verification failed"
    assert re.search(rf"\[(web1, web2|web2, web1)\] repository not reachable: .*{needle}", proc.stderr), explain(proc)
    for host in fleet3.hosts:
        assert snapshot(host) == before[host.name]


def test_changing_repo_url_deploys_from_the_new_repository(fab, project, fleet3, repo):
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(repo)!r}\n")
    ok(deploy(fab, fleet3))
    other = project / "other"
    other_sha = make_repo(other)
    other_sha = commit(other, {"app.py": "print('from the other repository')\n"}, "other")
    assert other_sha != sha_of(repo, "master")
    write_fabfile(project, ["web1"], extra=f"env.repo_url = {str(other)!r}\n")
    ok(deploy(fab, fleet3))
    host = fleet3["web1"]
    assert cat(host, f"{APP}/current/REVISION").strip() == other_sha
    assert cat(host, f"{APP}/current/app.py") == "print('from the other repository')\n"
    assert host.sh(f"git -c safe.directory='*' --git-dir={APP}/repo remote get-url origin").strip() == str(other)
    assert len(releases(host)) == 2 and live(host).startswith("releases/")
