"""The copy strategy's archive: one deterministic tar.gz made on the controller.

Same input, same bytes: entries are sorted (a directory) or in ``git
archive`` order (a commit), owners are dropped, and gzip carries no name
and no time. The content hash covers names, types, modes, link targets and
file contents, not times, so an unchanged build output keeps its
``sha256:`` revision.
"""

import fnmatch
import gzip
import hashlib
import os
import stat
import subprocess
import tarfile

from ..exceptions import ConfigError, ControllerError

__all__ = ["exclude_patterns", "excluded", "Built", "from_directory", "from_git", "ALWAYS_EXCLUDED"]

ALWAYS_EXCLUDED = (".git",)  # never shipped from a directory


class Built:
    """An archive on the controller: where, how big, its sha256, and the content hash."""

    def __init__(self, path, size, sha256, content):
        self.path, self.size, self.sha256, self.content = path, size, sha256, content


def exclude_patterns(value, setting="copy_exclude"):
    """``env.copy_exclude`` as a list of patterns, or ConfigError."""
    if value in (None, "", False):
        return []
    if isinstance(value, str):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"env.{setting} must be a list of patterns, got {value!r}") from None
    out = []
    for item in items:
        text = item if isinstance(item, str) else None
        if not text or not text.strip("/") or any(ord(ch) < 32 for ch in text):
            raise ConfigError(f"env.{setting} entry {item!r} is not a usable pattern")
        out.append(text)
    return out


def _match(parts, names):
    """Glob parts against path names; ``**`` spans any number of names."""
    if not parts:
        return not names
    head, rest = parts[0], parts[1:]
    if head == "**":
        return any(_match(rest, names[i:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], head) and _match(rest, names[1:])


def excluded(path, patterns):
    """Is ``path`` (relative, '/'-separated) left out by ``patterns``?

    A pattern without '/' matches a name at any depth (``*.log``,
    ``node_modules``); one with '/' matches from the top (``docs/*.md``,
    ``/local``). Leaving out a directory leaves out all it holds. ``*``
    never crosses '/'.
    """
    names = [n for n in path.split("/") if n not in ("", ".")]
    for pattern in patterns:
        body = pattern.strip("/")
        if "/" in body or pattern.startswith("/"):
            parts = body.split("/")
            if any(_match(parts, names[:i]) for i in range(1, len(names) + 1)):
                return True
        elif any(fnmatch.fnmatchcase(name, body) for name in names):
            return True
    return False


class _Hashing:
    """A reader that feeds what passes through it to a hash."""

    def __init__(self, raw, digest):
        self.raw, self.digest = raw, digest

    def read(self, n=-1):
        data = self.raw.read(n)
        self.digest.update(data)
        return data


class _Writer:
    def __init__(self, path):
        self.path = path
        self.file = open(path, "wb")
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.file, mtime=0, compresslevel=6)
        self.tar = tarfile.open(fileobj=self.gz, mode="w|", format=tarfile.PAX_FORMAT)
        self.content = hashlib.sha256()

    def add(self, info, data=None):
        clean = tarfile.TarInfo(info.name)
        clean.type, clean.mode, clean.linkname = info.type, info.mode & 0o7777, info.linkname
        clean.mtime, clean.size = int(info.mtime), info.size if info.isreg() else 0
        clean.uid = clean.gid = 0
        clean.uname = clean.gname = ""
        self.content.update(f"{clean.type!r}\0{clean.name}\0{clean.mode:o}\0{clean.linkname}\0{clean.size}\0".encode())
        self.tar.addfile(clean, _Hashing(data, self.content) if clean.isreg() else None)

    def finish(self):
        self.tar.close()
        self.gz.close()
        self.file.close()
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return Built(self.path, os.path.getsize(self.path), digest.hexdigest(), self.content.hexdigest())


def from_directory(root, patterns, out_path):
    """Archive the tree under ``root`` (sorted, ``.git`` and excluded paths left out)."""
    writer = _Writer(out_path)
    patterns = list(ALWAYS_EXCLUDED) + list(patterns)

    def walk(rel):
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            path = f"{rel}/{name}" if rel else name
            if excluded(path, patterns):
                continue
            st = os.lstat(os.path.join(root, path))
            info = tarfile.TarInfo(path)
            info.mode, info.mtime = stat.S_IMODE(st.st_mode), st.st_mtime
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                writer.add(info)
                walk(path)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(os.path.join(root, path))
                writer.add(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(os.path.join(root, path), "rb") as f:
                    writer.add(info, f)
            else:
                raise ControllerError(f"env.copy_dir: {os.path.join(root, path)} is neither a file, "
                                      "a directory nor a symlink; leave it out with env.copy_exclude")

    walk("")
    return writer.finish()


def from_git(repo, sha, tree, patterns, out_path):
    """Archive commit ``sha`` of the local ``repo`` (committed content only, like ``git archive``).

    ``tree`` keeps one subdirectory, which becomes the top of the archive.
    """
    writer = _Writer(out_path)
    proc = subprocess.Popen(["git", "-C", repo, "archive", "--format=tar", sha], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    prefix = tree.strip("/") + "/" if tree else ""
    found, problem = not prefix, None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as source:
            for member in source:
                name = member.name.rstrip("/")
                if prefix:
                    if not (name + "/").startswith(prefix):
                        continue
                    found = True
                    name = name[len(prefix):]
                    if not name:
                        continue
                if excluded(name, patterns):
                    continue
                member.name = name
                writer.add(member, source.extractfile(member) if member.isreg() else None)
        proc.stdout.read()  # the rest of the last record, so git can finish
    except tarfile.TarError as e:
        problem = str(e)
        proc.kill()
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.wait()
    built = writer.finish()
    if proc.returncode != 0 or problem:
        raise ControllerError(f"git archive {sha[:12]} of {repo} failed: {err or problem}")
    if not found:
        raise ConfigError(f"env.repo_tree {tree!r} is not a directory in commit {sha[:12]} of {repo}")
    return built
