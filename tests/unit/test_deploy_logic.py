"""The pure decisions of fake.tasks.deploy and the git strategy.

Shell text is checked by ``sh -n`` and, where it is read-only or confined to
a temporary directory, by running it with a local ``/bin/sh`` (no SSH).
"""

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import time

import pytest

from fake.registry import Registry

from fake.exceptions import ConfigError, MissingSetting
from fake.shell import Script
from fake.shell import unblock
from fake.scm import strategy
from fake.scm.git import Git
from fake.state import env
from fake.tasks.decide import next_release_name, releases_to_remove, rollback_target
from fake.tasks.lock import describe_lock
from fake.tasks.probe import HostState, probe_script
from fake.tasks.layout import deploy_path, linked_paths

R1, R2, R3, R4, R5 = (f"2026010{i}000000" for i in range(1, 6))
SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40


def sh(script, *args, **kwargs):
    return subprocess.run(["/bin/sh", "-c", script, *args], capture_output=True, text=True, timeout=10, **kwargs)


def outside_single_quotes(text):
    """The shell text with every '...' segment removed."""
    return re.sub(r"'[^']*'", "''", text)


def sh_syntax_ok(script):
    proc = subprocess.run(["/bin/sh", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return True


# -- releases_to_remove -----------------------------------------------------------
@pytest.mark.parametrize(
    "names, keep, live, expected",
    [
        ([R1, R2, R3, R4, R5], 5, R5, []),
        ([R1, R2, R3, R4, R5], 3, R5, [R1, R2]),
        ([R5, R3, R1, R4, R2], 3, R5, [R1, R2]),  # by name, not by input order
        ([R1, R2, R3, R4, R5], 1, R5, [R1, R2, R3, R4]),
        ([R1, R2, R3, R4, R5], "2", R5, [R1, R2, R3]),  # keep may come from --set as text
        # the live release is never removed, even when it is among the oldest
        ([R1, R2, R3, R4, R5], 2, R1, [R2, R3]),
        ([R1, R2, R3], 1, R2, [R1]),
        ([R1, R2], 10, R2, []),
        ([], 3, None, []),
        # names that are not releases are neither counted nor removed
        ([R1, R2, R3, "foo", "2026", "current", "2026010100000", "202601010000000", ".tmp"], 2, R3, [R1]),
        ({R1: "sha", R2: "sha", "foo": None}, 1, R2, [R1]),  # any iterable of names
    ],
)
def test_releases_to_remove(names, keep, live, expected):
    assert releases_to_remove(names, keep, live) == expected


# -- rollback_target ---------------------------------------------------------------
@pytest.mark.parametrize(
    "names, live, requested, expected",
    [
        ([R1, R2, R3], R3, None, R2),
        ([R3, R1, R2], R3, None, R2),  # previous by name
        ([R1, R2, R3], R2, None, R1),  # live is not the newest (already rolled back once)
        ([R1, R3, "foo", "2026"], R3, None, R1),
        ([R1, R2, R3], R3, R1, R1),
        ([R1, R2, R3], R1, R3, R3),  # a named target may be newer than live
    ],
)
def test_rollback_target(names, live, requested, expected):
    assert rollback_target(names, live, requested) == expected


def test_rollback_target_skips_releases_marked_bad():
    assert rollback_target([R1, R2, R3], R3, None, bad={R2}) == R1
    with pytest.raises(ValueError, match="no earlier release"):
        rollback_target([R1, R2, R3], R3, None, bad={R1, R2})
    with pytest.raises(ValueError, match=f"release {R2} is marked bad"):
        rollback_target([R1, R2, R3], R3, R2, bad={R2})


@pytest.mark.parametrize(
    "names, live, requested, message",
    [
        ([R1], R1, None, "no earlier release to roll back to"),
        ([R2, R3], R2, None, "no earlier release to roll back to"),
        ([R1, "foo"], R1, None, "no earlier release to roll back to"),
        ([R1, R2], R2, R5, f"release {R5} not found; releases: {R1}, {R2}"),
        ([R1, R2], R2, "foo", "release foo not found; releases: "),
        ([R1, R2], R2, R2, f"release {R2} is already live"),
        ([R1, R2], None, None, "no live release: current is missing"),
        ([R1, R2], None, R1, "no live release: current is missing"),
        ([], None, None, "no live release"),
    ],
)
def test_rollback_target_errors(names, live, requested, message):
    with pytest.raises(ValueError) as info:
        rollback_target(names, live, requested)
    assert message in str(info.value)


# -- next_release_name ----------------------------------------------------------------
NOW = datetime.datetime(2026, 11, 22, 6, 1, 2, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    "existing, expected",
    [
        ([], "20261122060102"),
        (["20261122060101", "20250101000000"], "20261122060102"),
        # a release with this very name exists (two deploys in one second): one later
        (["20261122060102"], "20261122060103"),
        # another host's clock was ahead: later than the latest release anywhere
        (["20261122060102", "20261201000000", "20261130000000"], "20261201000001"),
        (["20261231235959"], "20270101000000"),  # carries over into the next year
        # non-release names are ignored, however they sort
        (["foo", "2026", "99999999999999999", "zzz"], "20261122060102"),
    ],
)
def test_next_release_name(existing, expected):
    name = next_release_name(NOW, existing)
    assert name == expected
    assert all(name > n for n in existing if n.isdigit() and len(n) == 14)


def test_next_release_name_with_naive_datetime():
    assert next_release_name(datetime.datetime(2026, 1, 2, 3, 4, 5), set()) == "20260102030405"


# -- HostState.parse -----------------------------------------------------------------
SAMPLE_PROBE_OUTPUT = "\n".join([
    "now 1764000000",
    "current releases/20261122060102",
    f"release 20261120000000 {SHA_A} ",
    f"release 20261122060102 {SHA_B} ",
    f"release 20261121000000 {SHA_C} bad",
    "release 20261123000000 - ",
    'lock {"user": "bob", "pid": 7} ',
    "locked",
    "mirror",
    "missing config/database.yml",
    "missing .env",
    f"remote {SHA_C}\trefs/heads/main",
    "remote-error fatal: could not read from remote",
    "noref",
    "something unexpected",
    "",
])


def test_host_state_parse_sample():
    st = HostState.parse(SAMPLE_PROBE_OUTPUT)
    assert st.now == 1764000000
    assert st.current == "releases/20261122060102"
    assert st.live == "20261122060102"
    assert st.releases == {
        "20261120000000": SHA_A,
        "20261122060102": SHA_B,
        "20261121000000": SHA_C,
        "20261123000000": None,
    }
    assert st.bad == {"20261121000000"}
    assert st.lock.startswith('{"user": "bob", "pid": 7}')
    assert st.locked_by_us is True
    assert st.mirror is True
    assert st.missing == ["config/database.yml", ".env"]
    assert st.scm_lines == [
        f"remote {SHA_C}\trefs/heads/main",
        "remote-error fatal: could not read from remote",
        "noref",
    ]


def test_host_state_parse_empty_host():
    st = HostState.parse("now 5\n")
    assert (st.now, st.current, st.live, st.releases) == (5, None, None, {})
    assert (st.lock, st.locked_by_us, st.mirror, st.missing, st.scm_lines) == (None, False, False, [], [])


@pytest.mark.parametrize(
    "current, live",
    [
        ("releases/20261122060102", "20261122060102"),
        ("/srv/app/releases/20261122060102", "20261122060102"),
        ("/srv/app/releases/20261122060102/", "20261122060102"),
        ("/srv/app/other", None),  # current points at something that is not a release
        ("", None),
    ],
)
def test_host_state_live(current, live):
    st = HostState.parse(f"current {current}\n")
    assert st.live == live


def test_probe_output_from_a_real_tree_parses(tmp_path):
    """probe_script run by a local sh on a directory tree; HostState reads it back."""
    root = tmp_path / "my app;touch pwned;$(touch pwned2)`touch pwned3`"
    (root / "releases" / R1).mkdir(parents=True)
    (root / "releases" / R1 / "REVISION").write_text(SHA_A + "\n")
    (root / "releases" / R2).mkdir()
    (root / "releases" / R2 / ".fake-bad").write_text("")
    (root / "releases" / "not-a-file").write_text("")  # not a directory: skipped
    os.symlink(f"releases/{R1}", root / "current")
    env.deploy_path = str(root)

    info = {"token": "t1", "user": "alice"}
    before = int(time.time())
    proc = sh(probe_script(lock_info=info), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]  # nothing else ran
    st = HostState.parse(proc.stdout)
    assert isinstance(st.now, int)
    assert st.current == f"releases/{R1}"
    assert st.live == R1
    assert st.releases == {R1: SHA_A, R2: None}
    assert st.bad == {R2}
    assert st.locked_by_us and st.lock is None
    assert not st.mirror
    written = json.loads((root / "deploy.lock").read_text())
    since = written.pop("since")
    assert written == info and before <= since <= time.time() + 1  # the host's clock
    info = dict(info, since=since)

    # a second probe finds the lock and does not take it
    again = HostState.parse(sh(probe_script(lock_info={"token": "t2"})).stdout)
    assert not again.locked_by_us
    assert json.loads(again.lock) == info
    assert json.loads((root / "deploy.lock").read_text())["token"] == "t1"

    # a read-only probe changes nothing
    (root / "deploy.lock").unlink()
    (root / "repo").mkdir()
    ro = HostState.parse(sh(probe_script()).stdout)
    assert ro.mirror and not ro.locked_by_us and ro.lock is None
    assert not (root / "deploy.lock").exists()


# -- describe_lock ---------------------------------------------------------------------
LOCK = {"user": "alice", "from": "laptop", "pid": 12, "task": "deploy", "since": 1764000000}


@pytest.mark.parametrize(
    "age, text",
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m 0s"),
        (192, "3m 12s"),
        (3599, "59m 59s"),
        (3600, "1h 0m"),
        (3 * 3600 + 4 * 60 + 5, "3h 4m"),
        (-30, "0s"),  # clock skew never shows a negative age
    ],
)
def test_describe_lock_age(age, text):
    out = describe_lock(json.dumps(LOCK), LOCK["since"] + age)
    assert out == f"alice@laptop (pid 12, deploy) since 2025-11-24 16:00:00 UTC, {text} ago"


def test_describe_lock_without_now_or_since():
    assert describe_lock(json.dumps(LOCK)) == "alice@laptop (pid 12, deploy) since 2025-11-24 16:00:00 UTC"
    partial = {k: v for k, v in LOCK.items() if k != "since"}
    assert describe_lock(json.dumps(partial), 1764000100) == "alice@laptop (pid 12, deploy)"
    assert describe_lock("{}") == "?@? (pid ?, ?)"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("garbage", "an unreadable lock ('garbage')"),
        ("  half {json \n", "an unreadable lock ('half {json')"),
        ("", "an unreadable lock ('')"),
        (None, "an unreadable lock ('')"),
        ("x" * 200, "an unreadable lock ('" + "x" * 80 + "')"),
    ],
)
def test_describe_lock_unreadable(raw, expected):
    assert describe_lock(raw, 1764000000) == expected


@pytest.mark.parametrize("raw", ["12345", "null", "[1, 2]", '"alice"'])
def test_describe_lock_json_that_is_not_an_object(raw):
    assert describe_lock(raw, 1764000000).startswith("an unreadable lock")


# -- linked_paths ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dirs, files, expected",
    [
        (None, None, []),
        ([], [], []),
        (["static"], [], [("linked_dirs", "static")]),
        ("static", "config/db.yml", [("linked_dirs", "static"), ("linked_files", "config/db.yml")]),
        (["public/uploads/", "./log", "a//b", "a/./b/../c"], [".env"],
         [("linked_dirs", "public/uploads"), ("linked_dirs", "log"), ("linked_dirs", "a/b"),
          ("linked_dirs", "a/c"), ("linked_files", ".env")]),
        (lambda: ["computed"], None, [("linked_dirs", "computed")]),  # callable settings
    ],
)
def test_linked_paths_accepted(dirs, files, expected):
    if dirs is not None:
        env.linked_dirs = dirs
    if files is not None:
        env.linked_files = files
    assert linked_paths() == expected


@pytest.mark.parametrize(
    "key, value",
    [
        ("linked_dirs", "/etc"),
        ("linked_dirs", "//etc"),
        ("linked_dirs", ".."),
        ("linked_dirs", "../shared"),
        ("linked_dirs", "a/../../etc"),
        ("linked_dirs", "."),
        ("linked_dirs", "a/.."),
        ("linked_dirs", ""),
        ("linked_files", "/etc/passwd"),
        ("linked_files", "../../.ssh/authorized_keys"),
        ("linked_files", "config/../../x"),
    ],
)
def test_linked_paths_refused(key, value):
    env[key] = ["ok", value]
    with pytest.raises(ConfigError) as info:
        linked_paths()
    assert str(info.value) == f"env.{key} entry {value!r} must be a relative path inside the release"


@pytest.mark.parametrize("name", ["..data", "...", "..hidden/sub"])
def test_linked_paths_accepts_names_that_only_start_with_dots(name):
    env.linked_dirs = [name]
    assert linked_paths() == [("linked_dirs", name)]


# -- deploy_path and probe_script ------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [("/srv/app", "/srv/app"), ("/srv/app/", "/srv/app"), ("/", "/"), (lambda: "/x/", "/x")],
)
def test_deploy_path(value, expected):
    env.deploy_path = value
    assert deploy_path() == expected


def test_deploy_path_missing_and_relative():
    with pytest.raises(MissingSetting) as info:
        deploy_path()
    assert "env.deploy_path" in str(info.value)
    env.deploy_path = "srv/app"
    with pytest.raises(ConfigError, match="env.deploy_path must be an absolute path, got 'srv/app'"):
        deploy_path()


EVIL_PATH = "/srv/my app;touch /tmp/fake-unit-pwned"


@pytest.mark.parametrize("lock_info", [None, {"token": "t", "user": "o'brien; rm -rf /"}])
@pytest.mark.parametrize("with_scm", [False, True])
def test_probe_script_quotes_deploy_path_and_is_valid_sh(lock_info, with_scm):
    env.deploy_path = EVIL_PATH
    env.repo_url = "git@example.com:me/app.git"
    env.branch = "main"
    env.linked_files = ["config/db.yml"]
    text = probe_script(lock_info, Git() if with_scm else None)
    assert sh_syntax_ok(text)
    assert shlex.quote(EVIL_PATH) in text
    # every occurrence of the path starts a single-quoted word
    starts = [m.start() for m in re.finditer(re.escape(EVIL_PATH), text)]
    assert len(starts) >= 5
    assert all(text[i - 1] == "'" for i in starts)
    if with_scm:
        assert "echo missing config/db.yml" in text
        if lock_info is None:  # a dry run: ls-remote, nothing written
            assert "git ls-remote" in text and "fetch" not in text
        else:  # a deploy: one connection, the fetch, once the lock is ours
            assert "git ls-remote" not in text
            assert text.index("echo locked; fake_locked=1") < text.index("git -c gc.auto=0")
    else:
        assert "git" not in text
    if lock_info is not None:
        # the JSON goes in as one quoted word; the host adds "since" from its own clock
        assert shlex.quote(json.dumps(lock_info, sort_keys=True)[:-1] + ', "since": ') in text
        assert 'now=$(date +%s)' in text and '"$now" >' in text
        assert 'ln "$fake_new"' in text  # the lock appears whole or not at all


# -- git: resolve, validate, probe ------------------------------------------------------------
@pytest.mark.parametrize(
    "lines, branch, expected",
    [
        # a branch head
        ([f"remote {SHA_A}\trefs/heads/main"], "main", (SHA_A, "refs/heads/main", None)),
        # an annotated tag: the peeled ^{} commit, not the tag object
        ([f"remote {SHA_A}\trefs/tags/v1", f"remote {SHA_B}\trefs/tags/v1^{{}}"], "v1",
         (SHA_B, "refs/tags/v1^{}", None)),
        ([f"remote {SHA_B}\trefs/tags/v1^{{}}", f"remote {SHA_A}\trefs/tags/v1"], "v1",
         (SHA_B, "refs/tags/v1^{}", None)),
        # a lightweight tag
        ([f"remote {SHA_A}\trefs/tags/v2"], "v2", (SHA_A, "refs/tags/v2", None)),
        # a branch and a tag of the same name: the branch
        ([f"remote {SHA_A}\trefs/tags/x", f"remote {SHA_B}\trefs/heads/x"], "x", (SHA_B, "refs/heads/x", None)),
        # only exact ref names count
        ([f"remote {SHA_A}\trefs/heads/main-old"], "main", (None, None, "branch 'main' not found")),
        ([f"remote not-a-sha\trefs/heads/main"], "main", (None, None, "branch 'main' not found")),
        # no branch: the default branch via the symref
        ([f"remote ref: refs/heads/trunk\tHEAD", f"remote {SHA_C}\tHEAD"], None, (SHA_C, "refs/heads/trunk", None)),
        ([f"remote {SHA_C}\tHEAD"], None, (SHA_C, "HEAD", None)),
        ([], None, (None, None, "the repository has no default branch (HEAD)")),
        (["remote ref: refs/heads/main\tHEAD"], None, (None, None, "the repository has no default branch (HEAD)")),
        # the probe found nothing for the branch
        (["noref"], "nope", (None, None, "branch 'nope' not found")),
        # git failed
        (["remote-error fatal: repository 'x' not found"], "main",
         (None, None, "repository not reachable: fatal: repository 'x' not found")),
        (["remote-error a", "remote-error b", "remote-error c", "remote-error d"], None,
         (None, None, "repository not reachable: b | c | d")),
        # lines of other probes are ignored
        (["release x", f"remote {SHA_A}\trefs/heads/main", "mirror"], "main", (SHA_A, "refs/heads/main", None)),
    ],
)
def test_git_resolve(lines, branch, expected):
    assert Git().resolve(lines, branch) == expected


@pytest.mark.parametrize(
    "repo_url, branch",
    [
        ("git@github.com:user/repo.git", None),
        ("https://example.com/r.git", "main"),
        ("/srv/git/app.git", "release/1.2"),
        ("/srv/git/app.git", "v1.0^{}"),
        # odd names are accepted (git says whether they exist) and only ever used quoted
        ("x", "x;touch${IFS}/tmp/pwned"),
        ("x", "$(id)"),
        ("x", "`id`;x&&y|z>w"),
    ],
)
def test_git_validate_accepts(repo_url, branch):
    assert Git().validate(repo_url, branch) is None


@pytest.mark.parametrize(
    "repo_url, branch, message",
    [
        (None, "main", "setting env.repo_url is required by the git strategy but not set"),
        ("", None, "setting env.repo_url is required"),
        ("--upload-pack=touch /tmp/x", None, "env.repo_url '--upload-pack=touch /tmp/x' must not start with '-'"),
        ("x", "-b", "env.branch '-b' is not a usable branch, tag or commit name"),
        ("x", "--upload-pack=evil", "is not a usable branch"),
        ("x", "", "env.branch '' is not a usable branch"),
        ("x", "my branch", "env.branch 'my branch' is not a usable branch"),
        # whitespace is refused up front (git ref names cannot hold it either)
        ("x", "x;touch /tmp/pwned", "env.branch 'x;touch /tmp/pwned' is not a usable branch"),
        ("x", "tab\there", "is not a usable branch"),
        ("x", "new\nline", "is not a usable branch"),
        ("x", "bell\x07", "is not a usable branch"),
    ],
)
def test_git_validate_refuses(repo_url, branch, message):
    with pytest.raises(ConfigError) as info:
        Git().validate(repo_url, branch)
    assert message in str(info.value)


def _words(shell_line):
    lexer = shlex.shlex(shell_line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


HOSTILE_BRANCHES = [
    "x;touch${IFS}/tmp/pwned",
    "x;touch /tmp/pwned",  # refused by validate(); probe() must still quote it
    "$(touch /tmp/pwned)",
    "`id`",
    "it's",
    "x&&y|z>w",
    "a\"b",
]


@pytest.mark.parametrize("branch", HOSTILE_BRANCHES)
def test_git_probe_quotes_a_hostile_branch(branch):
    if " " not in branch:
        Git().validate("git@example.com:me/app.git", branch)  # accepted as a name
    probe = Git().probe("git@example.com:me/app.git", branch)
    assert sh_syntax_ok(probe)
    (ls_line,) = [ln for ln in probe.splitlines() if "ls-remote" in ln]
    inner = ls_line[ls_line.index("$(") + 2: ls_line.rindex(" 2>&1)")]
    words = _words(inner)
    assert words == [
        "git", "ls-remote", "--", "git@example.com:me/app.git",
        f"refs/heads/{branch}", f"refs/tags/{branch}", f"refs/tags/{branch}^{{}}",
    ]
    # the raw branch text never appears outside a quoted word
    for word in words[4:]:
        assert shlex.quote(word).startswith("'")
        assert shlex.quote(word) in inner
    assert branch not in outside_single_quotes(probe)


@pytest.mark.parametrize("branch", ["x;touch${IFS}{pwned}", "x;touch {pwned}", "$(touch {pwned})"])
def test_git_probe_hands_the_branch_to_git_as_one_argument(tmp_path, branch):
    """Run the probe with a stand-in ``git`` that prints its arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_git = bindir / "git"
    fake_git.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\n\' "arg:$a"; done\n')
    fake_git.chmod(0o755)
    pwned = tmp_path / "pwned"
    branch = branch.replace("{pwned}", str(pwned))
    probe = "problems=0\n" + Git().probe("repo url;touch " + str(pwned), branch) + '\necho "problems=$problems"\n'
    proc = sh(probe, env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert unblock(proc.stdout.splitlines()) == [
        "remote arg:ls-remote",
        "remote arg:--",
        f"remote arg:repo url;touch {pwned}",
        f"remote arg:refs/heads/{branch}",
        f"remote arg:refs/tags/{branch}",
        f"remote arg:refs/tags/{branch}^{{}}",
        "problems=0",
    ]
    assert not pwned.exists()


@pytest.mark.parametrize(
    "git_body, lines, problems",
    [
        ('printf "%s\\tref\\n" abc', ["remote abc\tref"], "0"),
        ("exit 0", ["noref"], "1"),
        ('echo "fatal: nope" >&2; exit 128', ["remote-error fatal: nope"], "1"),
    ],
)
def test_git_probe_outcomes(tmp_path, git_body, lines, problems):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text(f"#!/bin/sh\n{git_body}\n")
    (bindir / "git").chmod(0o755)
    probe = "problems=0\n" + Git().probe("r", None) + '\necho "problems=$problems"\n'
    proc = sh(probe, env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    out = unblock(proc.stdout.splitlines())
    assert out[:-1] == lines
    assert out[-1] == f"problems={problems}"


def test_git_probe_without_branch_asks_for_the_default_branch():
    probe = Git().probe("/srv/git/app.git", None)
    assert "git ls-remote --symref -- /srv/git/app.git HEAD" in probe
    assert "GIT_TERMINAL_PROMPT=0" in probe
    assert sh_syntax_ok(probe)


def test_git_create_release_steps_are_quoted_and_valid_sh():
    script = Script()
    Git().create_release(script, "url;x", "/srv/my app/repo", "/srv/my app/releases/1", SHA_A, mirror_present=True)
    labels = [label for label, _ in script.steps]
    assert labels == ["git environment", "read mirror origin", "git remote set-url", "git fetch", "new release",
                      "fetch done", f"export {SHA_A[:12]}", f"git archive {SHA_A[:12]}"]
    text = script.render()
    assert sh_syntax_ok(text)
    assert "'/srv/my app/repo'" in text and "'url;x'" in text
    fresh = Script()
    Git().create_release(fresh, "u", "/r", "/rel", SHA_A, mirror_present=False)
    assert [label for label, _ in fresh.steps][1] == "git clone --mirror"


def _git_export(tmp_path, git_script=None):
    """Run the git strategy's update steps against a real mirror (or a stand-in git)."""
    src = tmp_path / "src"
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True)
    (src / "app.py").write_text("print('hi')\n")
    (src / "lib").mkdir()
    (src / "lib" / "util.py").write_text("x = 1\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    sha = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    deploy = tmp_path / "deploy"
    (deploy / "releases").mkdir(parents=True)
    script = Script()
    Git().create_release(script, str(src), str(deploy / "repo"), str(deploy / "releases" / "1"), sha,
                         mirror_present=False)
    path = os.environ["PATH"]
    if git_script is not None:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "git").write_text(git_script.replace("{real}", shutil.which("git")))
        (bindir / "git").chmod(0o755)
        path = f"{bindir}:{path}"
    return deploy, sh(script.render(), env={"PATH": path, "HOME": str(tmp_path)})


@pytest.mark.parametrize("origin, runs_set_url", [("/srv/git/app.git", False), ("/srv/git/old.git", True),
                                                   ("/srv/git/app.git.bak", True)])
def test_git_rewrites_the_mirror_origin_only_when_repo_url_changed(tmp_path, origin, runs_set_url):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config").write_text('[core]\n\tbare = true\n[remote "other"]\n\turl = /srv/git/app.git\n'
                                 f'[remote "origin"]\n\turl = {origin}\n\tfetch = +refs/*:refs/*\n')
    script = Script()
    Git().create_release(script, "/srv/git/app.git", str(repo), str(tmp_path / "releases" / "1"), SHA_A,
                         mirror_present=True)
    steps = dict(script.steps)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text('#!/bin/sh\necho "git $*"\n')
    (bindir / "git").chmod(0o755)
    proc = sh(steps["read mirror origin"] + "\n" + steps["git remote set-url"], env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert ("remote set-url origin /srv/git/app.git" in proc.stdout) == runs_set_url


def test_git_export_fills_the_release_through_one_pipe(tmp_path):
    deploy, proc = _git_export(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (deploy / "releases" / "1" / "lib" / "util.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in (deploy / "releases").iterdir()) == ["1"]  # no tar, no flag left


def test_git_export_fails_when_git_archive_fails_after_a_clean_partial_stream(tmp_path):
    # git writes one whole member and dies: tar sees a well-formed archive and exits 0.
    partial = ('#!/bin/sh\ncase " $* " in *" archive "*) {real} "$@" | head -c 1024; exit 1;; esac\n'
               'exec {real} "$@"\n')
    deploy, proc = _git_export(tmp_path, partial)
    assert proc.returncode != 0
    label, _ = Script.failed_step(proc.stderr)
    assert label.startswith("git archive ")


def test_scm_strategy_lookup():
    assert isinstance(strategy("git"), Git)
    obj = object()
    assert strategy(obj) is obj
    with pytest.raises(ConfigError, match="env.scm = 'svn' is not a known strategy; known: git"):
        strategy("svn")


def test_release_rows_read_tag_commit_and_directory_deploys_from_the_log():
    from fake.tasks.decide import release_rows

    st = HostState()
    st.current = f"releases/{R3}"
    st.releases = {R1: SHA_A, R2: SHA_B, R3: SHA_C, "99999999999999": None}
    st.log = [
        f"Branch main (at {SHA_A}) deployed as release {R1} by alice",
        f"Tag v1.4.0 (at {SHA_B}) deployed as release {R2} by bob",
        f"Commit 1a2b3c4 (at {SHA_C}) deployed as release {R3} by carol",
    ]
    rows = {r[0]: r for r in release_rows(st)}
    assert rows[R1][3:5] == ("main", "alice")
    assert rows[R2][3:5] == ("tag v1.4.0", "bob")
    assert rows[R3][3:6] == ("commit 1a2b3c4", "carol", "live")
    assert rows[R2][5] == "previous"
    assert rows["99999999999999"][1] == "?"  # fourteen digits that are not a date: no crash


def test_link_steps_replace_repo_content_and_group_links_by_directory(tmp_path):
    from fake.tasks.deploy import _link_steps

    env.deploy_path = str(tmp_path / "app dir")
    release = tmp_path / "app dir" / "releases" / "1"
    shared = tmp_path / "app dir" / "shared"
    for d in ["log", "tmp/pids", "tmp/cache", "public/uploads", "config"]:
        (shared / d).mkdir(parents=True)
    (shared / "config" / "db.yml").write_text("shared db\n")
    (shared / "log" / "keep.log").write_text("kept\n")
    (release / "log").mkdir(parents=True)  # the repository ships log/ and config/db.yml
    (release / "log" / ".keep").write_text("")
    (release / "config").mkdir()
    (release / "config" / "db.yml").write_text("from git\n")
    script = Script()
    _link_steps(script, str(release), ["log", "tmp/pids", "tmp/cache", "public/uploads", "config/db.yml"])
    lns = [shell for label, shell in script.steps if shell.startswith("ln ")]
    assert len(lns) == 4  # release/, tmp/, public/, config/: tmp/pids and tmp/cache share one ln
    proc = sh(script.render())
    assert proc.returncode == 0, proc.stderr
    for path in ["log", "tmp/pids", "tmp/cache", "public/uploads", "config/db.yml"]:
        assert os.readlink(release / path) == str(shared / path)
    assert (release / "config" / "db.yml").read_text() == "shared db\n"
    assert (shared / "log" / "keep.log").read_text() == "kept\n"
    assert sorted(os.listdir(shared / "log")) == ["keep.log"]


def test_deploy_shared_settles_each_value_once_and_keeps_no_failure():
    from fake.engine import Run
    from fake.tasks.progress import DeployShared

    shared = DeployShared()
    with Run(env, Registry()):
        assert shared.token() == shared.token() and len(shared.token()) == 32
        assert DeployShared().token() == shared.token(), "one token for the whole run"
    with pytest.raises(ConfigError):
        shared.agree_release_name(lambda: (_ for _ in ()).throw(ConfigError("hosts disagree")))
    assert shared.agree_release_name(lambda: R1) == R1  # a failure is not kept: the next host asks again
    assert shared.agree_release_name(lambda: R2) == R1
    assert [shared.claim_banner() for _ in range(3)] == [True, False, False]


def test_the_action_and_flow_values_come_from_the_flow_not_env(library_registry):
    from fake.engine import FlowState, Run
    from fake.tasks.progress import action, show

    with Run(env, library_registry) as run:
        for name, expected in (("deploy", "deploy"), ("rollback", "rollback")):
            flow = FlowState(library_registry.expand(name)[0], ["web1"])
            flow.run = run
            token = flow.activate()
            try:
                env.host_string = "web1"
                assert action() == expected
                with pytest.raises(ValueError, match="fake_skip"):
                    show(fake_skip=True)  # only the documented values
                show(deploy_action=expected, release_name=R1)
                assert flow.shown("web1") == {"deploy_action": expected, "release_name": R1}
            finally:
                FlowState.deactivate(token)
    assert "deploy_action" not in env and "release_name" not in env


def test_of_runs_taking_over_a_dead_runs_lock_at_once_one_wins(tmp_path):
    """The take-over renames the dead lock aside first: only one rename can win."""
    import subprocess

    from fake.tasks.lock import take_over_shell

    env.deploy_path = str(tmp_path / "app dir")
    (tmp_path / "app dir").mkdir()
    lock = tmp_path / "app dir" / "deploy.lock"
    for trial in range(40):
        lock.write_text('{"pid": 1, "token": "dead0"}\n')
        scripts = [take_over_shell("dead0", {"token": f"run{n}", "pid": 2}) for n in range(2)]
        procs = [subprocess.Popen(["sh", "-c", text], stdout=subprocess.PIPE, text=True) for text in scripts]
        winners = [p.communicate()[0].split() for p in procs]
        assert sum(w == ["taken"] for w in winners) == 1, (trial, winners)
        assert '"token": "run' in lock.read_text()
        assert sorted(p.name for p in lock.parent.iterdir()) == ["deploy.lock"]
    lock.write_text('{"pid": 3, "token": "alive7"}\n')  # not the dead run's: left as it is
    out = subprocess.run(["sh", "-c", take_over_shell("dead0", {"token": "run9", "pid": 2})],
                         capture_output=True, text=True).stdout
    assert out == "" and "alive7" in lock.read_text()


def test_cleanup_plan_removes_old_and_half_made_releases_never_live_or_foreign_ones():
    from fake.tasks.decide import cleanup_plan

    releases = {"20260101000000": "a", "20260102000000": "b", "20260103000000": None,
                "20260104000000": "d", "notes": None}
    assert cleanup_plan(releases, 2, "20260105000000", {"20260104000000"}) == [
        "20260101000000", "20260102000000", "20260103000000"]
    # live somewhere in the run: kept, even when half-made or beyond keep
    assert cleanup_plan(releases, 2, "20260105000000", {"20260101000000", "20260103000000"}) == [
        "20260102000000"]


def test_releasing_the_lock_also_removes_the_file_the_probe_was_linking_in(tmp_path):
    """A connection dropped between the probe's write and its rm leaves deploy.lock.<token>."""
    import subprocess

    from fake.tasks.lock import unlock_shell

    env.deploy_path = str(tmp_path)
    (tmp_path / "deploy.lock").write_text('{"token": "t0k3n"}\n')
    (tmp_path / "deploy.lock.t0k3n").write_text('{"token": "t0k3n"}\n')
    (tmp_path / "deploy.lock.other").write_text("another run's\n")
    subprocess.run(["sh", "-c", unlock_shell("t0k3n")], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.lock.other"]
