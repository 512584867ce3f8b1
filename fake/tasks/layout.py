"""Where things are on a host, and the settings that say so.

Every path a deploy touches comes from a function here (tasks never join
paths themselves); settings are read through CallableEnv, so any of them
may be a callable or differ per role.
"""

import posixpath
import re

from ..env import CallableEnv, current_scope
from ..exceptions import ConfigError, MissingSetting
from ..state import env

__all__ = [
    "cenv", "RELEASE_NAME", "STAMP", "LOCK_FILE", "BAD_MARKER", "ARCHIVE_TEMP",
    "deploy_path", "releases_path", "shared_path", "repo_path", "current_path", "release_path",
    "lock_path", "linked_paths", "check_settings",
]

cenv = CallableEnv(env)

RELEASE_NAME = re.compile(r"^\d{14}$")
STAMP = "%Y%m%d%H%M%S"
LOCK_FILE = "deploy.lock"
BAD_MARKER = ".fake-bad"  # in a release that failed its health check; never a rollback target
# A rolled-back release is archived under this hidden name, then renamed: a run that
# dies mid-archive leaves no half archive under the real name, and whoever next
# holds or releases the lock removes it.
ARCHIVE_TEMP = ".fake-archive.tar"


# -- paths ------------------------------------------------------------------
def deploy_path():
    value = cenv.get("deploy_path")
    if not value:
        scope = current_scope()
        raise MissingSetting("deploy_path", scope.host if scope else None,
                             "the directory on each host that holds releases/, shared/ and current")
    value = str(value)
    if not value.startswith("/"):
        raise ConfigError(f"env.deploy_path must be an absolute path, got {value!r}")
    return value.rstrip("/") or "/"


def releases_path():
    return posixpath.join(deploy_path(), "releases")


def shared_path():
    return posixpath.join(deploy_path(), "shared")


def repo_path():
    return posixpath.join(deploy_path(), "repo")


def current_path():
    return posixpath.join(deploy_path(), "current")


def release_path(name=None):
    return posixpath.join(releases_path(), name or env.release_name)


def lock_path():
    return posixpath.join(deploy_path(), LOCK_FILE)


def linked_paths():
    """linked_dirs then linked_files, each checked to stay inside the release."""
    out = []
    for key in ("linked_dirs", "linked_files"):
        value = cenv.get(key) or []
        if isinstance(value, str):
            value = [value]
        for path in value:
            norm = posixpath.normpath(str(path))
            if not path or norm.startswith("/") or norm.split("/")[0] == ".." or norm == ".":
                raise ConfigError(f"env.{key} entry {path!r} must be a relative path inside the release")
            out.append((key, norm))
    paths = [p for _, p in out]
    for path in paths:
        for other in paths:
            if other != path and path.startswith(other + "/"):
                raise ConfigError(f"linked path {path!r} is inside linked path {other!r}: it is shared "
                                  f"already, and linking both would delete it from shared/")
        if paths.count(path) > 1:
            raise ConfigError(f"linked path {path!r} is listed twice")
    return out


def check_settings():
    """The settings every deploy, rollback, unlock and listing needs; fails before any connection."""
    deploy_path()
    keep = cenv.get("keep_releases")
    try:
        if int(keep) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"env.keep_releases must be a whole number >= 1, got {keep!r}") from None
    linked_paths()
