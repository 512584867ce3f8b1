"""Copy: the controller makes one archive and every host unpacks it.

Hosts need no git and no access to the repository: the controller runs
``env.build_command`` (if any) once, archives a commit of a local git
repository (committed content only) or ``env.copy_dir``, and each host's
update command receives it on its standard input. That command checks its
size and sha256 before unpacking, so a damaged upload never becomes a
release.
"""

import os
import posixpath
import re
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

from ..exceptions import ConfigError, ControllerError
from ..shell import quote
from . import archive
from .base import Resolved, Strategy

__all__ = ["Copy", "fabfile_dir", "upload_path"]

Prepared = namedtuple("Prepared", "built revision ref tmpdir")
CONTENT_ID = "sha256:"  # a directory's revision: the hash of its archive's content
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/]*:")  # a URL or scp-style host:path
SHA256 = ("if command -v sha256sum >/dev/null 2>&1; then fake_sum=$(sha256sum < {a})\n"
          "elif command -v shasum >/dev/null 2>&1; then fake_sum=$(shasum -a 256 < {a})\n"
          "else fake_sum=$(openssl dgst -sha256 -r < {a}); fi\n"
          "fake_sum=${{fake_sum%% *}}")


def fabfile_dir():
    """The directory of the loaded fabfile (the current directory if none)."""
    path = getattr(sys.modules.get("fabfile"), "__file__", None)
    if not path:
        return os.getcwd()
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(folder) if os.path.basename(path) == "__init__.py" else folder


def upload_path(deploy_path, release_name):
    return posixpath.join(deploy_path, f".fake-upload-{release_name}.tar.gz")


def _git(repo, *args):
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env)


def _tail(text, lines=3):
    kept = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


class Copy(Strategy):
    name = "copy"

    # -- settings, checked before any connection --------------------------------
    def validate(self, repo_url, branch):
        self.validate_branch(branch)
        build = self.setting("build_command")
        if build is not None and not isinstance(build, str):
            raise ConfigError(f"env.build_command must be a shell command (a string), got {build!r}")
        archive.exclude_patterns(self.setting("copy_exclude"))
        self.tree()
        self.source(repo_url)

    def source(self, repo_url):
        """('dir', path, as given) for env.copy_dir, else ('git', repository path, as given)."""
        base = fabfile_dir()
        copy_dir = self.setting("copy_dir")
        if copy_dir not in (None, ""):
            if not isinstance(copy_dir, (str, os.PathLike)):
                raise ConfigError(f"env.copy_dir must be a directory path, got {copy_dir!r}")
            return "dir", os.path.normpath(os.path.join(base, os.fspath(copy_dir))), os.fspath(copy_dir)
        if repo_url:
            url = os.fspath(repo_url)
            if _REMOTE.match(url):
                raise ConfigError(f"env.repo_url {url!r} must be a local path for scm 'copy' "
                                  "(this machine archives it; hosts never see it)")
            path = os.path.normpath(os.path.join(base, url))
            if not os.path.isdir(path):
                raise ConfigError(f"env.repo_url {url!r} is not a directory on this machine")
            usable = _git(path, "rev-parse", "--git-dir")
            if usable.returncode != 0:
                raise ConfigError(f"env.repo_url {url!r} is not a usable git repository: {_tail(usable.stderr)}")
            return "git", path, url
        found = _git(base, "rev-parse", "--show-toplevel")
        if found.returncode != 0:
            raise ConfigError(f"scm 'copy' needs env.copy_dir or env.repo_url: the fabfile's directory {base} "
                              f"is not in a git repository ({_tail(found.stderr)})")
        return "git", found.stdout.strip(), found.stdout.strip()

    # -- once per deploy, on the controller ------------------------------------------
    def prepare_key(self, repo_url, branch):
        excludes = tuple(archive.exclude_patterns(self.setting("copy_exclude")))
        return (self.name, repo_url, branch, self.setting("copy_dir"), self.setting("build_command"),
                excludes, self.tree())

    def prepare(self, repo_url, branch):
        """Run the build, then make the archive: a Prepared(built, revision, ref, tmpdir)."""
        self.build()
        kind, path, given = self.source(repo_url)
        patterns = archive.exclude_patterns(self.setting("copy_exclude"))
        tmpdir = tempfile.TemporaryDirectory(prefix="fake-copy-")  # removed with the Prepared
        out = os.path.join(tmpdir.name, "release.tar.gz")
        if kind == "dir":
            if not os.path.isdir(path):
                after = " (after env.build_command)" if self.setting("build_command") else ""
                raise ConfigError(f"env.copy_dir {given!r} is not a directory{after}: {path}")
            built = archive.from_directory(path, patterns, out)
            return Prepared(built, CONTENT_ID + built.content, "dir:" + given, tmpdir)
        sha, ref = self.local_ref(path, branch)
        built = archive.from_git(path, sha, self.tree(), patterns, out)
        return Prepared(built, sha, ref, tmpdir)

    def build(self):
        command = self.setting("build_command")
        if not command:
            return
        base = fabfile_dir()
        started = time.monotonic()
        proc = subprocess.run(command, shell=True, cwd=base, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ControllerError(f"env.build_command {command!r} failed (exit {proc.returncode}) in {base}, "
                                  f"before any host was changed: {_tail(proc.stderr) or _tail(proc.stdout)}")
        _say(f"built with {command!r} ({time.monotonic() - started:.2f}s)")

    def local_ref(self, repo, branch):
        """(sha, ref) of ``branch`` (default HEAD) in the local repository."""
        name = str(branch) if branch else "HEAD"
        ref = None
        if branch:
            for candidate in (f"refs/heads/{name}", f"refs/tags/{name}"):
                if _git(repo, "show-ref", "--verify", "--quiet", candidate).returncode == 0:
                    ref = candidate
                    break
        else:
            head = _git(repo, "symbolic-ref", "--quiet", "HEAD")
            ref = head.stdout.strip() if head.returncode == 0 else "HEAD"
        found = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref or name}^{{commit}}")
        if found.returncode != 0:
            problem = _tail(found.stderr)
            raise ConfigError(f"env.branch {name!r} is no branch, tag or commit of {repo}"
                              + (f" ({problem})" if problem else ""))
        return found.stdout.strip(), ref or "commit"

    # -- on each host --------------------------------------------------------------
    def probe(self, repo_url, branch, repo_path=None):
        """Can this host unpack and check the archive? (No git needed.)"""
        return "\n".join([
            "for fake_tool in tar gzip; do",
            '  command -v "$fake_tool" >/dev/null 2>&1 || { echo "scm-missing $fake_tool"; problems=1; }',
            "done",
            "if ! command -v sha256sum >/dev/null 2>&1 && ! command -v shasum >/dev/null 2>&1 "
            "&& ! command -v openssl >/dev/null 2>&1; then echo 'scm-missing sha256sum'; problems=1; fi",
        ])

    def resolve(self, lines, branch, prepared=None):
        missing = [line.split(" ", 1)[1] for line in lines if line.startswith("scm-missing ")]
        if missing:
            return Resolved(None, None, f"scm 'copy' needs {', '.join(missing)} on the host to check and "
                                        "unpack the upload (sha256sum may be shasum or openssl)")
        if prepared is None:  # a dry run: say what would be archived, build nothing
            try:
                kind, path, given = self.source(self.setting("repo_url"))
                if kind == "dir":
                    return Resolved("(when built)", "dir:" + given, None)
                return Resolved(*self.local_ref(path, branch), None)
            except ConfigError as e:
                return Resolved(None, None, str(e))
        return Resolved(prepared.revision, prepared.ref, None)

    def create_release(self, script, repo_url, repo_path, release_path, revision, mirror_present,
                       prepared=None, target=None, fetched=False):
        """Receive the archive on the update command's stdin, check it, unpack it, remove it."""
        built = prepared.built
        remote = upload_path(target.deploy_path, target.release_name)
        self.upload(script, target, built.path, remote)
        a = quote(remote)
        script.add("verify upload size", f"fake_size=$(wc -c < {a})\n[ $fake_size -eq {int(built.size)} ] || "
                   f'{{ echo "uploaded archive has $fake_size bytes, expected {int(built.size)}" >&2; exit 1; }}')
        script.add("verify upload sha256", SHA256.format(a=a) + f"\n[ \"$fake_sum\" = {quote(built.sha256)} ] || "
                   f'{{ echo "uploaded archive has sha256 $fake_sum, expected {built.sha256}: '
                   'it changed on the way, nothing was unpacked" >&2; exit 1; }')
        script.argv("mkdir release", "mkdir", release_path)
        script.argv("unpack", "tar", "-x", "-z", "-f", remote, "-C", release_path)
        script.argv("remove upload", "rm", "-f", "--", remote)

    def upload(self, script, target, local, remote):
        """Send the archive to ``remote`` on the update command's own standard input.

        SFTP would cost a session, a handshake and a round trip per request
        before the update command could even start; streamed, the upload
        costs nothing but its bytes. The size and sha256 checks that follow
        catch a short or damaged transfer.
        """
        script.stdin = local
        script.add("receive upload", f"cat > {quote(remote)}")

    def leftovers(self, deploy_path, release_name):
        return [upload_path(deploy_path, release_name)]

    def describe(self, ref, branch):
        if ref == "HEAD":
            return "HEAD"
        return super().describe(ref, branch)

    def abbreviate(self, revision):
        """A directory's content id keeps its ``sha256:`` and 7 characters; a commit id, as git's."""
        if revision.startswith(CONTENT_ID):
            return revision[:len(CONTENT_ID) + 7]
        return super().abbreviate(revision)


def _say(line):
    from ..output import console

    console().write(line)
