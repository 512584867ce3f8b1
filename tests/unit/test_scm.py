"""The strategies' pure parts: ref and commit-id resolution, excludes, archives, the shell they write.

Shell is checked with ``sh -n`` and, where it stays inside a temporary
directory, run by a local ``/bin/sh`` (no SSH).
"""

import hashlib
import os
import subprocess
import tarfile

import pytest

from fake.exceptions import ConfigError, ControllerError
from fake.shell import Script
from fake.transport.local import LocalTarget
from fake.shell import unblock
from fake.engine import Run
from fake.scm import Copy, Git, Resolved, Strategy, Target, strategy
from fake.scm.archive import exclude_patterns, excluded, from_directory, from_git
from fake.scm.base import in_sentence, once_per_deploy
from fake.scm.git import is_commit_id, resolve_refs
from fake.state import env, registry

A, B, C = "a" * 40, "b" * 40, "c" * 40
A1 = "a1" + "0" * 38
A2 = "a2" + "0" * 38


def sh(script, **kwargs):
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=20, **kwargs)


def sh_ok(script):
    proc = subprocess.run(["/bin/sh", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return True


def remote(sha, ref):
    return f"remote {sha}\t{ref}"


# -- resolving refs and commit ids ----------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("abcd", True), ("ABCDEF12", True), ("a" * 40, True),
    ("abc", False), ("a" * 41, False), ("v1.4.0", False), ("main", False), ("", False), (None, False),
])
def test_is_commit_id(name, expected):
    assert is_commit_id(name) == expected


TIPS = [remote(A1, "HEAD"), remote(A1, "refs/heads/master"), remote(B, "refs/tags/v1"),
        remote(C, "refs/tags/v1^{}"), remote(A2, "refs/heads/feature")]


@pytest.mark.parametrize("lines, branch, expected", [
    # an annotated tag is its commit, named as a tag
    (TIPS, "v1", (C, "refs/tags/v1^{}", None)),
    # a full id that is no tip: taken as is, checked after the fetch
    (TIPS, "d" * 40, ("d" * 40, "commit", None)),
    # an abbreviated id of a tip; upper case is fine
    (TIPS, "a2000", (A2, "commit", None)),
    (TIPS, "A2000", (A2, "commit", None)),
    # the peeled tag's commit counts, the tag object itself does not
    (TIPS, "cccc", (C, "commit", None)),
    (TIPS, "bbbb", (None, None, "commit 'bbbb' not found: it is no branch or tag tip and not in this "
                                "host's mirror yet; give the full 40-character commit id")),
    # found by the mirror
    (TIPS + ["scm-commit " + "e" * 40], "eeee", ("e" * 40, "commit", None)),
    # two candidates
    (TIPS, "a", (None, None, "branch 'a' not found")),  # too short to be an id
    (TIPS, "a000", (None, None, "commit 'a000' not found: it is no branch or tag tip and not in this "
                                "host's mirror yet; give the full 40-character commit id")),
    ([remote(A1, "refs/heads/x"), remote(A2, "refs/heads/y")], "a1000", (A1, "commit", None)),
    ([remote("a1234" + "0" * 35, "refs/heads/x"), remote("a1235" + "0" * 35, "refs/heads/y")], "a123",
     (None, None, "commit id 'a123' is ambiguous: a12340000000, a12350000000")),
    # a branch named like an id wins over the id
    ([remote(A1, "refs/heads/beef"), remote("beef" + "0" * 36, "refs/heads/x")], "beef",
     (A1, "refs/heads/beef", None)),
    # git's closing advice is dropped, what failed is kept
    (["remote-error Host key verification failed.", "remote-error fatal: Could not read from remote repository.",
      "remote-error ", "remote-error Please make sure you have the correct access rights",
      "remote-error and the repository exists."], "main",
     (None, None, "repository not reachable: Host key verification failed. | "
                  "fatal: Could not read from remote repository.")),
])
def test_resolve_refs(lines, branch, expected):
    assert resolve_refs(lines, branch) == expected
    assert Git().resolve(lines, branch, None) == expected


@pytest.mark.parametrize("ref, branch, text", [
    ("refs/heads/main", None, "Branch main"),
    ("refs/tags/v1.4.0^{}", "v1.4.0", "Tag v1.4.0"),
    ("refs/tags/v2", "v2", "Tag v2"),
    ("commit", "1a2b3c4", "Commit 1a2b3c4"),
    ("dir:build", None, "Directory build"),
    ("HEAD", None, "Branch HEAD"),
])
def test_describe(ref, branch, text):
    assert Strategy().describe(ref, branch) == text


@pytest.mark.parametrize("scm, resolved, branch, text", [
    (Git(), (A, "refs/heads/main", None), None, "main (aaaaaaa)"),
    (Git(), (A, "refs/tags/v1.4.0^{}", None), "v1.4.0", "tag v1.4.0 (aaaaaaa)"),
    (Git(), (A, "commit", None), "aaaa", "commit aaaa (aaaaaaa)"),
    (Copy(), ("sha256:" + "0123456789abcdef" * 4, "dir:build", None), None, "directory build (sha256:0123456)"),
    (Copy(), (B, "HEAD", None), None, "HEAD (bbbbbbb)"),
])
def test_headline_is_the_strategys_own_short_label(scm, resolved, branch, text):
    assert scm.headline(Resolved(*resolved), branch) == text


@pytest.mark.parametrize("described, short", [
    ("Branch main", "main"), ("Tag V2", "tag V2"), ("Commit 1a2b3c4", "commit 1a2b3c4"),
    ("Directory build", "directory build"), ("HEAD", "HEAD"),
])
def test_in_sentence_reads_describe_back(described, short):
    assert in_sentence(described) == short


@pytest.mark.parametrize("scm", [Git(), Copy()])
@pytest.mark.parametrize("branch", ["", "-x", "a b", "a\tb"])
def test_every_strategy_refuses_an_unusable_branch(scm, branch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="is not a usable branch, tag or commit name"):
        scm.validate("u", branch)


# -- the git probe and update steps --------------------------------------------------------------
def test_git_probe_for_a_commit_id_lists_every_ref_and_asks_the_mirror(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text('#!/bin/sh\nif [ "$1" = ls-remote ]; then printf "%s\\trefs/heads/m\\n" '
                                + A + '; else echo ' + B + '; fi\n')
    (bindir / "git").chmod(0o755)
    (tmp_path / "repo").mkdir()
    probe = Git().probe("u", "bbbb", repo_path=str(tmp_path / "repo"))
    assert sh_ok(probe)
    assert "refs=$(git ls-remote -- u 2>&1)" in probe
    proc = sh("problems=0\n" + probe + '\necho "problems=$problems"', env={"PATH": f"{bindir}:/usr/bin:/bin"})
    lines = unblock(proc.stdout.splitlines())
    assert lines == [remote(A, "refs/heads/m"), "scm-commit " + B, "problems=0"]
    assert resolve_refs(lines[:-1], "bbbb") == (B, "commit", None)


def labels(script):
    return [label for label, _ in script.steps]


def test_git_steps_with_a_shallow_fresh_mirror():
    env.git_shallow_clone = "2"
    script = Script()
    Git().create_release(script, "/srv/my repo", "/d/repo", "/d/releases/1", A, mirror_present=False)
    assert labels(script) == ["git environment", "git init --bare", "git remote add", "git fetch",
                              "new release", "fetch done", f"export {A[:12]}", f"git archive {A[:12]}"]
    text = script.render()
    assert sh_ok(text)
    assert "'file:///srv/my repo'" in text and "--depth=2" in text
    again = Script()
    Git().create_release(again, "/srv/my repo", "/d/repo", "/d/releases/1", A, mirror_present=True)
    assert "--depth=2" in again.render() and "--unshallow" not in again.render()


def test_git_fetch_unshallows_when_the_setting_goes(tmp_path):
    script = Script()
    Git().create_release(script, "u", str(tmp_path / "repo"), "/r", A, mirror_present=True)
    (fetch,) = [shell for label, shell in script.steps if label == "git fetch"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text('#!/bin/sh\necho "$@"\n')
    (bindir / "git").chmod(0o755)
    run = lambda: sh(fetch, env={"PATH": f"{bindir}:/usr/bin:/bin"}).stdout  # noqa: E731
    assert "--unshallow" not in run()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "shallow").write_text(A)
    assert "--unshallow -- u +refs/heads/*" in run()


def test_git_steps_for_repo_tree_and_submodules():
    env.repo_tree = "services/api/"
    env.git_submodules = True
    script = Script()
    Git().create_release(script, "git@h:r.git", "/d/repo", "/d/releases/20260101000000", A, mirror_present=True)
    assert labels(script) == [
        "git environment", "read mirror origin", "git remote set-url", "git fetch", f"repo_tree services/api in {A[:12]}",
        "new release", "mkdir release", "clear checkout", "git clone --shared", "checkout origin", "git checkout",
        "git submodule update", "fetch done", "pack checkout", "unpack checkout", "remove archive", "remove checkout"]
    text = script.render()
    assert sh_ok(text)
    assert "/d/.fake-checkout-20260101000000/services/api" in text
    assert Git().leftovers("/d", "20260101000000") == ["/d/releases/.20260101000000.tar",
                                                       "/d/.fake-checkout-20260101000000"]
    env.git_submodules = False
    plain = Script()
    Git().create_release(plain, "u", "/d/repo", "/d/releases/1", A, mirror_present=True)
    assert f"archive --format=tar --prefix=1/ {A}:services/api" in plain.render()
    assert Git().leftovers("/d", "1") == ["/d/releases/.1.git-failed"]


@pytest.mark.parametrize("key, value, message", [
    ("repo_tree", "../up", "env.repo_tree '../up' must be a relative path inside the repository"),
    ("repo_tree", "/abs", "must be a relative path"),
    ("git_shallow_clone", "0", "env.git_shallow_clone must be a whole number >= 1, got '0'"),
    ("git_shallow_clone", "deep", "env.git_shallow_clone must be a whole number >= 1"),
    ("git_max_concurrent", 0, "env.git_max_concurrent must be a whole number >= 1, got 0"),
    ("git_submodules", "perhaps", "env.git_submodules must be true or false, got 'perhaps'"),
])
def test_git_validate_refuses_bad_options(key, value, message):
    env[key] = value
    with pytest.raises(ConfigError) as info:
        Git().validate("u", "main")
    assert message in str(info.value)


def test_git_options_from_the_command_line_are_text():
    env.update(git_shallow_clone="3", git_submodules="true", git_max_concurrent="4", repo_tree="./a//b")
    git = Git()
    git.validate("u", None)
    assert (git.depth(), git.submodules(), git.max_concurrent(), git.tree()) == (3, True, 4, "a/b")
    env.update(git_shallow_clone=None, git_submodules="no", git_max_concurrent=None, repo_tree=".")
    assert (git.depth(), git.submodules(), git.max_concurrent(), git.tree()) == (None, False, 10, None)


def test_strategy_names():
    assert isinstance(strategy("copy"), Copy)
    with pytest.raises(ConfigError, match="known: git, copy"):
        strategy("svn")


# -- once per deploy --------------------------------------------------------------------------
def test_once_per_deploy_computes_once_and_keeps_a_failure():
    calls = []

    def failing():
        calls.append(1)
        raise ControllerError("build failed")

    with Run(env, registry):
        for _ in range(3):
            with pytest.raises(ControllerError):
                once_per_deploy("k", failing)
        assert once_per_deploy("j", lambda: object()) is once_per_deploy("j", lambda: object())
    assert calls == [1]


def test_git_limit_is_one_semaphore_per_deploy():
    env.git_max_concurrent = 2
    with Run(env, registry):
        first, second = Git().limit(), Git().limit()
        assert first is second
        assert first.acquire(blocking=False) and first.acquire(blocking=False)
        assert not first.acquire(blocking=False)


# -- excludes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path, patterns, out", [
    ("debug.log", ["*.log"], True),
    ("a/b/debug.log", ["*.log"], True),
    ("a/node_modules/x/y.js", ["node_modules"], True),
    ("docs/guide.md", ["/docs"], True),
    ("lib/docs/guide.md", ["/docs"], False),
    ("docs/guide.md", ["docs/*.md"], True),
    ("docs/api/guide.md", ["docs/*.md"], False),  # '*' stays within one name
    ("docs/api/guide.md", ["docs/**/*.md"], True),
    ("docs/guide.md", ["docs/**/*.md"], True),
    ("build/js/app.js.map", ["build/"], True),
    ("app.py", ["*.log", "docs"], False),
    ("app.py", [], False),
    ("logs.txt", ["log"], False),
])
def test_excluded(path, patterns, out):
    assert excluded(path, patterns) is out


@pytest.mark.parametrize("value, expected", [
    (None, []), ("*.log", ["*.log"]), (["a", "/b"], ["a", "/b"]), (("x",), ["x"]),
])
def test_exclude_patterns(value, expected):
    assert exclude_patterns(value) == expected


@pytest.mark.parametrize("value", [[""], ["/"], [3], 5, ["a\nb"]])
def test_exclude_patterns_refused(value):
    with pytest.raises(ConfigError, match="env.copy_exclude"):
        exclude_patterns(value)


# -- archives ---------------------------------------------------------------------------------
def make_tree(root):
    (root / "site" / "js").mkdir(parents=True)
    (root / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (root / "site" / "js" / "app.js").write_text("go()\n")
    (root / "site" / "js" / "app.js.map").write_text("{}\n")
    (root / "site" / "run.sh").write_text("#!/bin/sh\n")
    (root / "site" / "run.sh").chmod(0o755)
    os.symlink("index.html", root / "site" / "home")
    (root / "site" / ".git").mkdir()
    (root / "site" / ".git" / "HEAD").write_text("x")
    return root / "site"


def names(path):
    with tarfile.open(path) as tar:
        return [(m.name, m.type, m.mode, m.uid, m.uname, m.linkname) for m in tar]


def test_directory_archive_is_deterministic_and_hashes_content_only(tmp_path):
    site = make_tree(tmp_path)
    one = from_directory(str(site), ["*.map"], str(tmp_path / "one.tar.gz"))
    two = from_directory(str(site), ["*.map"], str(tmp_path / "two.tar.gz"))
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    assert (one.sha256, one.size, one.content) == (two.sha256, two.size, two.content)
    assert one.sha256 == hashlib.sha256((tmp_path / "one.tar.gz").read_bytes()).hexdigest()
    assert names(one.path) == [
        ("home", tarfile.SYMTYPE, 0o777, 0, "", "index.html"),
        ("index.html", tarfile.REGTYPE, 0o644, 0, "", ""),
        ("js", tarfile.DIRTYPE, 0o755, 0, "", ""),
        ("js/app.js", tarfile.REGTYPE, 0o644, 0, "", ""),
        ("run.sh", tarfile.REGTYPE, 0o755, 0, "", ""),
    ]
    os.utime(site / "index.html", (1, 1))  # a new time: new bytes, same content hash
    three = from_directory(str(site), ["*.map"], str(tmp_path / "three.tar.gz"))
    assert three.content == one.content and three.sha256 != one.sha256
    (site / "index.html").write_text("<h1>changed</h1>\n")
    assert from_directory(str(site), ["*.map"], str(tmp_path / "four.tar.gz")).content != one.content
    (site / "run.sh").chmod(0o644)
    assert from_directory(str(site), [], str(tmp_path / "five.tar.gz")).content != one.content


def git(repo, *args):
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=dict(
        os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x",
        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def local_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for rel, text in {"app.py": "1\n", "debug.log": "x\n", "services/api/main.py": "api\n",
                      "services/api/api.log": "x\n", "services/web/i.html": "w\n"}.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "tag", "-a", "v1", "-m", "v1")
    (repo / "app.py").write_text("2\n")
    git(repo, "commit", "-q", "-am", "two")
    (repo / "app.py").write_text("uncommitted\n")
    return repo


def test_git_archive_is_deterministic_with_excludes_and_tree(local_repo, tmp_path):
    sha = git(local_repo, "rev-parse", "HEAD")
    one = from_git(str(local_repo), sha, None, ["*.log"], str(tmp_path / "a.tar.gz"))
    two = from_git(str(local_repo), sha, None, ["*.log"], str(tmp_path / "b.tar.gz"))
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes() and one.sha256 == two.sha256
    assert [n for n, *_ in names(one.path)] == ["app.py", "services", "services/api", "services/api/main.py",
                                                "services/web", "services/web/i.html"]
    with tarfile.open(one.path) as tar:
        assert tar.extractfile("app.py").read() == b"2\n"  # committed content, not the working tree
    sub = from_git(str(local_repo), sha, "services/api", [], str(tmp_path / "c.tar.gz"))
    assert [n for n, *_ in names(sub.path)] == ["api.log", "main.py"]
    with pytest.raises(ConfigError, match="env.repo_tree 'nope' is not a directory in commit"):
        from_git(str(local_repo), sha, "nope", [], str(tmp_path / "d.tar.gz"))
    with pytest.raises(ControllerError, match="git archive"):
        from_git(str(local_repo), "f" * 40, None, [], str(tmp_path / "e.tar.gz"))


# -- copy ---------------------------------------------------------------------------------------
def test_copy_resolves_local_refs(local_repo):
    copy = Copy()
    head = git(local_repo, "rev-parse", "HEAD")
    tagged = git(local_repo, "rev-parse", "v1^{commit}")
    assert copy.local_ref(str(local_repo), None) == (head, "refs/heads/main")
    assert copy.local_ref(str(local_repo), "v1") == (tagged, "refs/tags/v1")
    assert copy.local_ref(str(local_repo), tagged[:8]) == (tagged, "commit")
    with pytest.raises(ConfigError, match="env.branch 'nope' is no branch, tag or commit of"):
        copy.local_ref(str(local_repo), "nope")


@pytest.mark.parametrize("settings, message", [
    ({"repo_url": "git@github.com:me/app.git"}, "must be a local path for scm 'copy'"),
    ({"repo_url": "https://example.com/app.git"}, "must be a local path for scm 'copy'"),
    ({"repo_url": "/nonexistent/repo"}, "is not a directory on this machine"),
    ({"repo_url": "/"}, "is not a usable git repository"),
    ({"copy_dir": "build", "build_command": ["make"]}, "env.build_command must be a shell command"),
    ({"copy_dir": "build", "copy_exclude": [""]}, "env.copy_exclude entry ''"),
    ({"copy_dir": "build", "branch": "-x"}, "env.branch '-x' is not a usable"),
])
def test_copy_validate_refuses(settings, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not in a git repository
    env.update(settings)
    with pytest.raises(ConfigError) as info:
        Copy().validate(env.get("repo_url"), env.get("branch"))
    assert message in str(info.value)


def test_copy_without_a_source_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="scm 'copy' needs env.copy_dir or env.repo_url"):
        Copy().validate(None, None)


def _release_script(copy, prepared, deploy_path, name="20260101000000"):
    script = Script()
    release = os.path.join(deploy_path, "releases", name)
    os.makedirs(os.path.dirname(release), exist_ok=True)
    copy.create_release(script, None, None, release, prepared.revision, False, prepared=prepared,
                        target=Target(LocalTarget(), "local", deploy_path, name))
    return script, release


def test_copy_build_upload_verify_unpack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env.update(copy_dir="out", build_command="mkdir -p out && echo built > out/index.html")
    copy = Copy()
    copy.validate(None, None)
    prepared = copy.prepare(None, None)
    assert prepared.revision.startswith("sha256:") and prepared.ref == "dir:out"
    assert copy.resolve(["scm-unrelated x"], None, prepared) == (prepared.revision, "dir:out", None)
    deploy_path = str(tmp_path / "srv")
    script, release = _release_script(copy, prepared, deploy_path)
    assert labels(script) == ["receive upload", "verify upload size", "verify upload sha256", "mkdir release",
                              "unpack", "remove upload"]
    assert script.stdin == prepared.built.path  # the archive rides on the update command's stdin
    with open(script.stdin, "rb") as archive:
        proc = sh(script.render(), stdin=archive)
    assert proc.returncode == 0, proc.stderr
    assert open(os.path.join(release, "index.html")).read() == "built\n"
    assert os.listdir(deploy_path) == ["releases"]  # the upload is gone


def test_copy_damaged_upload_is_refused_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_text("x" * 5000)
    env.copy_dir = "out"
    copy = Copy()
    prepared = copy.prepare(None, None)
    deploy_path = str(tmp_path / "srv")
    script, release = _release_script(copy, prepared, deploy_path)
    upload = os.path.join(deploy_path, ".fake-upload-20260101000000.tar.gz")
    damaged = bytearray(open(script.stdin, "rb").read())
    damaged[20] ^= 0xFF
    proc = subprocess.run(["/bin/sh", "-c", script.render()], input=bytes(damaged), capture_output=True, timeout=10)
    proc.stderr = proc.stderr.decode()
    assert proc.returncode != 0
    assert "fake-failed-step: verify upload sha256" in proc.stderr and "it changed on the way" in proc.stderr
    assert not os.path.exists(release)
    assert copy.leftovers(deploy_path, "20260101000000") == [upload]


def test_copy_build_failure_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env.update(copy_dir="out", build_command="echo nope >&2; exit 4")
    with pytest.raises(ControllerError, match=r"env.build_command .* failed \(exit 4\) .*: nope"):
        Copy().prepare(None, None)


def test_copy_probe_reports_missing_tools(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sed",):
        os.symlink(f"/usr/bin/{tool}", bindir / tool)
    probe = "problems=0\n" + Copy().probe(None, None) + '\necho "problems=$problems"\n'
    assert "git" not in probe
    lines = sh(probe, env={"PATH": str(bindir)}).stdout.splitlines()
    assert lines == ["scm-missing tar", "scm-missing gzip", "scm-missing sha256sum", "problems=1"]
    resolved = Copy().resolve(lines[:-1], None, None)
    assert resolved.error.startswith("scm 'copy' needs tar, gzip, sha256sum on the host")
    assert sh(probe).stdout.splitlines() == ["problems=0"]


def test_default_branch_is_heads_symref_not_a_remote_tracking_head():
    from fake.scm.git import Git

    sha = "7" * 40
    # `git ls-remote --symref <non-bare repo> HEAD` also lists refs/remotes/origin/HEAD
    lines = ["remote ref: refs/heads/main\tHEAD", f"remote {sha}\tHEAD",
             "remote ref: refs/remotes/origin/main\trefs/remotes/origin/HEAD",
             f"remote {sha}\trefs/remotes/origin/HEAD"]
    sha_got, ref, error = Git().resolve(lines, None)
    assert (sha_got, ref, error) == (sha, "refs/heads/main", None)


def test_git_housekeeping_runs_gc_once_live_and_only_warns(tmp_path):
    from fake.scm.base import HOUSEKEEPING_FAILED

    script = Script()
    Git().housekeeping(script, "/srv/my app/repo")
    assert labels(script) == ["git gc --auto"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text('#!/bin/sh\necho "git $*" >&2\nexit 1\n')
    (bindir / "git").chmod(0o755)
    proc = sh(script.render() + "echo after\n", env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [HOUSEKEEPING_FAILED, "after"]
    assert "git -C /srv/my app/repo gc --auto --quiet" in proc.stderr
    fetch = Script()
    Git().create_release(fetch, "u", "/r", "/d/releases/1", A, mirror_present=True)
    assert "git -c gc.auto=0 -c maintenance.auto=false -C /r fetch" in fetch.render()
