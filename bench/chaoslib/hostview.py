"""A host's deploy_path, read through /proc/<sshd pid>/root: what the invariants are checked on.

Reading through the host's own mount namespace starts nothing on the host,
so a check cannot disturb (or be disturbed by) what a fault left running.
"""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .fixture import APP, BAD_MARKER, LINKED_DIRS, LINKED_FILES


@dataclass
class HostView:
    current: str = None                 # link text, None if no symlink
    current_notlink: bool = False
    releases: dict = field(default_factory=dict)   # name -> (rev or None, bad, links ok)
    hidden: set = field(default_factory=set)
    entries: set = field(default_factory=set)
    log_size: int = 0
    log_head: str = ""
    log_all: str = ""
    log_new: list = field(default_factory=list)
    lock: str = None
    shared: dict = field(default_factory=dict)
    fence: bool = False                 # .current.fake.tmp is a directory: a failed run's fence

    @property
    def live(self):
        if self.current and self.current.startswith("releases/"):
            return self.current[len("releases/"):]
        return None

    @classmethod
    def read(cls, root, log_prev=0):
        """Read deploy_path through ``root``, a host's /proc/<pid>/root: no process started on the host.

        Links are read, never followed: an absolute link would resolve in
        this process's namespace, not the host's.
        """
        v = cls()
        app = root / APP.lstrip("/")
        try:
            v.entries = set(os.listdir(app))
        except FileNotFoundError:
            return v
        fence = app / ".current.fake.tmp"
        v.fence = fence.is_dir() and not fence.is_symlink()
        current = app / "current"
        if current.is_symlink():
            v.current = os.readlink(current)
        elif current.exists():
            v.current_notlink = True
        releases = app / "releases"
        for name in sorted(os.listdir(releases)) if releases.is_dir() else []:
            path = releases / name
            if name.startswith(".") or path.is_symlink() or not path.is_dir():
                v.hidden.add(name)
                continue
            try:
                rev = (path / "REVISION").read_text().split("\n")[0] or None
            except (OSError, UnicodeDecodeError):
                rev = None
            links = all(_link_into_shared(root, path, p) for p in LINKED_FILES + LINKED_DIRS)
            v.releases[name] = (rev, (path / BAD_MARKER).exists(), links)
        try:
            data = (app / "revisions.log").read_bytes()
        except FileNotFoundError:
            data = b""
        v.log_size = len(data)
        v.log_head = hashlib.sha256(data[:log_prev]).hexdigest()
        v.log_all = hashlib.sha256(data).hexdigest()
        v.log_new = data[log_prev:].decode(errors="replace").splitlines()
        try:
            v.lock = (app / "deploy.lock").read_text(errors="replace")[:600].replace("\n", " ")
        except (FileNotFoundError, IsADirectoryError):
            v.lock = None
        shared = app / "shared"
        for dirpath, _, files in os.walk(shared):
            for name in files:
                path = Path(dirpath) / name
                if path.is_symlink():
                    continue
                v.shared[str(path.relative_to(shared))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return v


def _link_into_shared(root, release, path):
    """``release/path`` is a symlink to ``deploy_path/shared/path``, and that exists (on the host)."""
    link = release / path
    if not link.is_symlink():
        return False
    target = os.readlink(link)
    return target == f"{APP}/shared/{path}" and (root / target.lstrip("/")).exists()


def good_releases(view):
    """The releases a rollback may pick on a host: not marked bad."""
    return {r for r, (_, bad, _) in view.releases.items() if not bad}
