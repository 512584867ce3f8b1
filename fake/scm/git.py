"""Git: a bare mirror in ``repo/``, exported with ``git archive`` per release.

The strategy only writes shell for the deploy's batched commands: a probe
(is the repository reachable, what commit is the branch at) that joins the
read-only inspection, and the steps that fill a release. Git never prompts:
a missing credential or unknown host key fails at once with git's message.
"""

import posixpath
import re
import threading

from .. import settings
from ..exceptions import ConfigError
from ..shell import block, join, quote
from ..state import env
from .base import FETCH_DONE, HOUSEKEEPING_FAILED, Resolved, Strategy, once_per_deploy
from .gitfetch import fetch_and_list

__all__ = ["Git", "resolve_refs", "is_commit_id"]

NO_PROMPT = (
    "GIT_TERMINAL_PROMPT=0; export GIT_TERMINAL_PROMPT; "
    'GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes -o ConnectTimeout=15}"; export GIT_SSH_COMMAND'
)
_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")
REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
MAX_CONCURRENT = 10
# git's closing advice after a failed connection; the lines before it say what failed
_BOILERPLATE = ("Please make sure you have the correct access rights", "and the repository exists.")


def _read_origin(repo_path):
    """Shell setting ``$fake_origin`` to the mirror's origin URL as its config file spells it."""
    config = quote(posixpath.join(repo_path, "config"))
    return "\n".join([
        "fake_origin=; fake_in=",
        "while IFS= read -r fake_line; do",
        "  case $fake_line in",
        """    '['*) if [ "$fake_line" = '[remote "origin"]' ]; then fake_in=1; else fake_in=; fi;;""",
        """    *) if [ -n "$fake_in" ]; then case $fake_line in "\turl = "*) fake_origin=${fake_line#*url = };; esac; fi;;""",
        "  esac",
        f"done < {config} 2>/dev/null || true",
    ])


def is_commit_id(name):
    """Could ``name`` be a (possibly abbreviated) commit id?"""
    return bool(name) and bool(_HEX.match(str(name)))


def resolve_refs(lines, branch):
    """Resolved from ``git ls-remote`` lines (``remote <sha>\\t<ref>``) and mirror lookups.

    A branch wins over a tag of the same name, an annotated tag means its
    commit (``^{}``), and a name that is no ref but looks like a commit id
    is matched against every listed commit and the host's mirror
    (``scm-commit <sha>``); a full id not seen anywhere is taken as is and
    checked after the fetch.
    """
    refs, errors, symref, known = {}, [], None, set()
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "remote":
            if rest.startswith("ref: "):
                # `ls-remote --symref X HEAD` also matches refs/remotes/*/HEAD
                # in a non-bare repository: only HEAD itself names the default branch.
                target, _, name = rest[5:].partition("\t")
                if name.strip() == "HEAD":
                    symref = target.strip()
                continue
            sha, _, ref = rest.partition("\t")
            refs[ref.strip()] = sha.strip()
        elif kind == "remote-error":
            errors.append(rest)
        elif kind == "noref":
            return Resolved(None, None, f"branch {branch!r} not found")
        elif kind == "scm-commit" and _SHA.match(rest.strip()):
            known.add(rest.strip())
    errors = [e for e in errors if e.strip() and e.strip() not in _BOILERPLATE]
    if errors:
        return Resolved(None, None, "repository not reachable: " + " | ".join(errors[-3:]))
    if branch:
        for ref in (f"refs/heads/{branch}", f"refs/tags/{branch}^{{}}", f"refs/tags/{branch}"):
            if ref in refs and _SHA.match(refs[ref]):
                return Resolved(refs[ref], ref, None)
        if is_commit_id(branch):
            return _resolve_commit(str(branch).lower(), refs, known)
        return Resolved(None, None, f"branch {branch!r} not found")
    sha = refs.get("HEAD")
    if not sha:
        return Resolved(None, None, "the repository has no default branch (HEAD)")
    return Resolved(sha, symref or "HEAD", None)


def _resolve_commit(prefix, refs, known):
    # Annotated tag objects are not commits: use their peeled ^{} line instead.
    commits = {sha for ref, sha in refs.items()
               if _SHA.match(sha) and f"{ref}^{{}}" not in refs} | known
    matches = sorted(sha for sha in commits if sha.startswith(prefix))
    if len(matches) == 1:
        return Resolved(matches[0], "commit", None)
    if len(matches) > 1:
        return Resolved(None, None, f"commit id {prefix!r} is ambiguous: "
                                    + ", ".join(m[:12] for m in matches[:5]))
    if len(prefix) == 40:
        return Resolved(prefix, "commit", None)
    return Resolved(None, None, f"commit {prefix!r} not found: it is no branch or tag tip and not in this "
                                "host's mirror yet; give the full 40-character commit id")


class Git(Strategy):
    name = "git"

    # -- settings ----------------------------------------------------------
    def validate(self, repo_url, branch):
        if not repo_url:
            raise ConfigError("setting env.repo_url is required by the git strategy but not set")
        if str(repo_url).startswith("-"):
            raise ConfigError(f"env.repo_url {repo_url!r} must not start with '-'")
        self.validate_branch(branch)
        self.tree()
        self.depth()
        self.submodules()
        self.max_concurrent()

    def depth(self):
        return settings.number(env, "git_shallow_clone", minimum=1, whole=True)

    def submodules(self):
        return settings.flag(env, "git_submodules")

    def max_concurrent(self):
        return settings.number(env, "git_max_concurrent", minimum=1, whole=True, default=MAX_CONCURRENT)

    def fetch_url(self, repo_url):
        """The URL the mirror uses: a local path becomes file:// when shallow, else git ignores --depth."""
        url = str(repo_url)
        if self.depth() and url.startswith("/"):
            return "file://" + url
        return url

    # -- probe and resolve ---------------------------------------------------
    def probe(self, repo_url, branch, repo_path=None):
        """Shell printing ``remote <sha> <ref>`` lines, or ``remote-error``/``noref``.

        Sets ``problems=1`` when the repository or the branch is not there. A
        name that may be a commit id lists every ref instead, and asks the
        mirror, if there is one, for the full id.
        """
        commit = is_commit_id(branch)
        if commit:
            ls = "git ls-remote -- " + quote(repo_url)
        elif branch:
            patterns = [f"refs/heads/{branch}", f"refs/tags/{branch}", f"refs/tags/{branch}^{{}}"]
            ls = "git ls-remote -- " + " ".join(quote(p) for p in [repo_url, *patterns])
        else:
            ls = "git ls-remote --symref -- " + quote(repo_url) + " HEAD"
        empty = "true" if commit else "echo noref; problems=1"
        lines = [
            NO_PROMPT,
            f"if refs=$({ls} 2>&1); then",
            f'  if [ -n "$refs" ]; then {block("remote", "refs")}; else {empty}; fi',
            f'else {block("remote-error", "refs")}; problems=1; fi',
        ]
        if commit and repo_path:
            r = quote(repo_path)
            spec = quote(f"{branch}^{{commit}}")
            lines.append(f"if [ -d {r} ] && full=$(git -C {r} rev-parse --verify --quiet {spec} 2>/dev/null); "
                         'then echo "scm-commit $full"; fi')
        return "\n".join(lines)

    def probe_locked(self, repo_url, branch, repo_path):
        """The deploy's one connection to the repository: fetch into the mirror, list refs from it."""
        return fetch_and_list(self.fetch_url(repo_url), branch, repo_path, self.depth(), REFSPECS,
                              is_commit_id(branch), NO_PROMPT, _read_origin(repo_path), FETCH_DONE)

    def resolve(self, lines, branch, prepared=None):
        """(sha, ref, error) from the probe's lines."""
        return resolve_refs(lines, branch)

    # -- the release ---------------------------------------------------------
    def create_release(self, script, repo_url, repo_path, release_path, sha, mirror_present,
                       prepared=None, target=None, fetched=False):
        """Add the steps that update the mirror and export ``sha`` into the release."""
        url, depth, tree = self.fetch_url(repo_url), self.depth(), self.tree()
        # No automatic gc during the fetch: it would hold up the release; it
        # runs in finishing instead, once the release is live (housekeeping).
        fetch = ["git", "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-C", repo_path,
                 "fetch", "--prune", "--quiet"]
        fetch += [f"--depth={depth}"] if depth else []
        script.add("git environment", NO_PROMPT)
        if fetched:
            pass  # the probe fetched it, holding the lock (gitfetch): no second connection
        elif mirror_present:
            # Fetch from the URL itself, so the fetch never depends on the
            # mirror's config; origin is rewritten only when repo_url changed
            # (read with builtins: no git started when it did not).
            script.add("read mirror origin", _read_origin(repo_path))
            script.add("git remote set-url", f'if [ "$fake_origin" != {quote(url)} ]; then '
                       + join(["git", "-C", repo_path, "remote", "set-url", "origin", url]) + "; fi")
            unshallow = "" if depth else f" $([ -f {quote(posixpath.join(repo_path, 'shallow'))} ] && echo --unshallow)"
            script.add("git fetch", join(fetch) + unshallow + " " + join(["--", url, *REFSPECS]))
        elif depth:
            script.argv("git init --bare", "git", "init", "--bare", "--quiet", repo_path)
            script.argv("git remote add", "git", "-C", repo_path, "remote", "add", "--mirror=fetch", "origin", url)
            script.argv("git fetch", *fetch, "origin", *REFSPECS)
        else:
            script.argv("git clone --mirror", "git", "clone", "--mirror", "--quiet", "--", url, repo_path)
        if tree:
            script.argv(f"repo_tree {tree} in {sha[:12]}", "git", "-C", repo_path, "cat-file", "-e", f"{sha}:{tree}")
        script.argv("new release", "test", "!", "-e", release_path)
        if self.submodules():
            script.argv("mkdir release", "mkdir", release_path)
            self._export_with_submodules(script, url, repo_path, release_path, sha, tree, target)
        else:
            # One pipe, no temporary tar: git's --prefix makes tar create the
            # release directory. A pipeline's status is tar's alone, so git's
            # failure leaves a flag the next step checks (a dying git can hand
            # tar a clean but partial stream).
            script.add("fetch done", f"echo {FETCH_DONE}")  # frees this host's git_max_concurrent slot
            treeish = f"{sha}:{tree}" if tree else sha
            parent, name = posixpath.split(release_path)
            flag = self._failed_flag(release_path)
            archive = join(["git", "-C", repo_path, "archive", "--format=tar", f"--prefix={name}/", treeish])
            script.add(f"export {sha[:12]}",
                       f"{{ {archive} || : > {quote(flag)}; }} | {join(['tar', '-x', '-f', '-', '-C', parent])}")
            script.argv(f"git archive {sha[:12]}", "test", "!", "-e", flag)

    @staticmethod
    def _failed_flag(release_path):
        """Left by a failed ``git archive`` beside the release (hidden from releases/*)."""
        return posixpath.join(posixpath.dirname(release_path), "." + posixpath.basename(release_path) + ".git-failed")

    @staticmethod
    def _tarball(release_path):
        """The submodule checkout's temporary tar, beside the release (hidden from releases/*)."""
        return posixpath.join(posixpath.dirname(release_path), "." + posixpath.basename(release_path) + ".tar")

    def _checkout_path(self, repo_path, release_path):
        return posixpath.join(posixpath.dirname(repo_path), ".fake-checkout-" + posixpath.basename(release_path))

    def _export_with_submodules(self, script, url, repo_path, release_path, sha, tree, target):
        # A bare mirror cannot archive submodules: check the commit out in a
        # throwaway clone that borrows the mirror's objects, let git fetch each
        # submodule at its recorded commit, and copy the tree without .git.
        work = self._checkout_path(repo_path, release_path)
        script.argv("clear checkout", "rm", "-rf", "--", work)
        script.argv("git clone --shared", "git", "clone", "--quiet", "--no-checkout", "--shared", "--", repo_path, work)
        # Relative submodule URLs resolve against origin: make it repo_url, not the mirror.
        script.argv("checkout origin", "git", "-C", work, "remote", "set-url", "origin", url)
        script.argv("git checkout", "git", "-C", work, "checkout", "--quiet", "--detach", sha)
        script.argv("git submodule update", "git", "-C", work, "submodule", "update", "--init", "--recursive", "--quiet")
        script.add("fetch done", f"echo {FETCH_DONE}")  # submodules came from their servers too
        source = posixpath.join(work, tree) if tree else work
        tarball = self._tarball(release_path)
        script.argv("pack checkout", "tar", "-C", source, "--exclude=.git", "-cf", tarball, ".")
        script.argv("unpack checkout", "tar", "-x", "-f", tarball, "-C", release_path)
        script.argv("remove archive", "rm", "-f", "--", tarball)
        script.argv("remove checkout", "rm", "-rf", "--", work)

    def housekeeping(self, script, repo_path):
        """``git gc --auto`` on the mirror, the one the fetch skipped; a failure only warns."""
        script.add("git gc --auto", f"if ! {join(['git', '-C', repo_path, 'gc', '--auto', '--quiet'])}; "
                                    f"then echo {HOUSEKEEPING_FAILED}; fi")

    def leftovers(self, deploy_path, release_name):
        release = posixpath.join(deploy_path, "releases", release_name)
        if self.submodules():
            return [self._tarball(release), self._checkout_path(posixpath.join(deploy_path, "repo"), release)]
        return [self._failed_flag(release)]

    def limit(self):
        """At most ``git_max_concurrent`` hosts fetch at once (held until FETCH_DONE)."""
        n = self.max_concurrent()
        return once_per_deploy(("fake-git-fetch-slots", n), lambda: threading.BoundedSemaphore(n))
