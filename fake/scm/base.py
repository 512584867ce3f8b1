"""The interface every way of filling a release implements.

``env.scm`` names a strategy (``'git'``, ``'copy'``) or is an object with
these methods. ``fake.tasks.deploy`` calls them in this order:

1. ``validate`` before any connection (preflight), on the controller;
2. ``prepare`` once per deploy on the controller, before any host is probed
   or locked (``prepare_once`` does the once);
3. ``probe``: shell joined into ``deploy:check``'s read-only inspection;
4. ``resolve``: the probe's lines (and what ``prepare`` made) become a
   revision, or an error for that host;
5. ``create_release``: steps added to the one batched update command; it
   may set ``script.stdin`` to a local file the command receives. ``limit()`` is held from the command's start until it
   prints the line ``FETCH_DONE`` (or ends): print it once the step that
   needs the repository server is done;
6. ``revision``: the text written to ``REVISION``; ``describe`` says what
   was deployed, for ``revisions.log``, and ``headline`` (``describe`` and
   ``abbreviate``) for the deploy's banner;
7. ``housekeeping``: steps added to the finishing command, once the release
   is live (print ``HOUSEKEEPING_FAILED`` rather than fail).

A deploy that fails before publishing removes ``leftovers`` with the
release, in the command that already removes the release.
"""

import contextlib
import posixpath
import threading
from collections import namedtuple

from .. import settings
from ..exceptions import ConfigError

__all__ = ["Strategy", "Resolved", "Target", "once_per_deploy", "in_sentence", "PROBE_PREFIX", "FETCH_DONE",
           "HOUSEKEEPING_FAILED"]

PROBE_PREFIX = "scm-"  # probe lines of this kind reach resolve()
HOUSEKEEPING_FAILED = "fake-housekeeping-failed"  # printed by a housekeeping step that did not work
FETCH_DONE = "fake-fetch-done"  # printed by the update command once the repository is no longer needed

# revision: what REVISION holds; ref: what it came from (refs/heads/x, refs/tags/x,
# 'commit', 'dir:<path>'); error: why this host cannot deploy, or None.
Resolved = namedtuple("Resolved", "revision ref error")

# Where create_release works: the host's connection and name, and the deploy's paths.
Target = namedtuple("Target", "connection host deploy_path release_name")


class Strategy:
    """Base class with no-op defaults; subclasses override what they need."""

    name = "?"

    # -- settings --------------------------------------------------------
    def setting(self, key, default=None):
        """``env`` value for the current host (callables evaluated); typed reads use :mod:`fake.settings`."""
        from ..state import env

        return settings.read(env, key, default)

    def tree(self):
        """``env.repo_tree``: the subdirectory to deploy, normalised, or None for all."""
        value = self.setting("repo_tree")
        if value in (None, "", ".", "/"):
            return None
        text = str(value)
        norm = posixpath.normpath(text).strip("/")
        if text.startswith(("/", "-")) or norm.split("/")[0] == ".." or any(ord(ch) < 32 for ch in text):
            raise ConfigError(f"env.repo_tree {value!r} must be a relative path inside the repository")
        return None if norm == "." else norm

    # -- the interface ---------------------------------------------------------
    def validate(self, repo_url, branch):
        """Raise ConfigError for unusable settings; runs before any connection."""
        self.validate_branch(branch)

    @staticmethod
    def validate_branch(branch):
        """A branch, tag or commit name that cannot be taken for an option or split by a shell."""
        if branch is not None:
            b = str(branch)
            if not b or b.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in b):
                raise ConfigError(f"env.branch {branch!r} is not a usable branch, tag or commit name")

    def prepare_key(self, repo_url, branch):
        """What makes two hosts' prepared artifacts the same (roles may differ)."""
        return (type(self).__name__, repo_url, branch)

    def prepare(self, repo_url, branch):
        """Controller-side work done once per deploy; its result goes to resolve and create_release."""
        return None

    def prepare_once(self, repo_url, branch):
        key = ("fake-scm-prepare",) + tuple(self.prepare_key(repo_url, branch))
        return once_per_deploy(key, lambda: self.prepare(repo_url, branch))

    def probe(self, repo_url, branch, repo_path=None):
        """Read-only shell; print ``scm-...`` lines, set ``problems=1`` if the host cannot deploy."""
        return ""

    def probe_locked(self, repo_url, branch, repo_path):
        """Shell run by a deploy's probe once it holds the lock, instead of ``probe``; None: use ``probe``.

        It may change the host's cache of the repository (``git`` fetches
        into its mirror here, so a deploy reaches the repository once); it
        runs only while the deploy lock is this run's, and never in a dry run.
        """
        return None

    def resolve(self, lines, branch, prepared=None):
        """Resolved(revision, ref, error) from this host's probe lines."""
        raise NotImplementedError

    def create_release(self, script, repo_url, repo_path, release_path, revision, mirror_present,
                       prepared=None, target=None, fetched=False):
        """Add the steps that fill ``release_path`` to the update Script.

        ``fetched``: ``probe_locked`` already brought the host's cache up to date.
        """
        raise NotImplementedError

    def revision(self, resolved):
        """The text of REVISION."""
        return resolved[0]

    def describe(self, ref, branch):
        """'Branch master', 'Tag v1.4.0', 'Commit 1a2b3c4': what was deployed, as revisions.log says it."""
        ref = ref or ""
        if ref.startswith("refs/heads/"):
            return "Branch " + ref[len("refs/heads/"):]
        if ref.startswith("refs/tags/"):
            return "Tag " + ref[len("refs/tags/"):].removesuffix("^{}")
        if ref == "commit":
            return f"Commit {branch}"
        if ref.startswith("dir:"):
            return "Directory " + ref[4:]
        return f"Branch {branch or ref or 'HEAD'}"

    def headline(self, resolved, branch):
        """'main (1a2b3c4)', 'tag v1.4.0 (1a2b3c4)': what a deploy ships, for its banner."""
        return f"{in_sentence(self.describe(resolved.ref, branch))} ({self.abbreviate(resolved.revision)})"

    def abbreviate(self, revision):
        """The short form of a revision a person reads: a commit id's first 7 characters."""
        return revision[:7]

    def limit(self):
        """Held from the update command's start until it prints FETCH_DONE (e.g. to limit concurrent fetches)."""
        return contextlib.nullcontext()

    def housekeeping(self, script, repo_path):
        """Add steps that tidy up after a deploy that is live (e.g. gc of a mirror)."""

    def leftovers(self, deploy_path, release_name):
        """Paths a failed update may leave; removed with the unpublished release."""
        return []


def in_sentence(described):
    """'Branch main' -> 'main', 'Tag v1.4.0' -> 'tag v1.4.0': a :meth:`Strategy.describe` text mid-sentence.

    Also reads back the lines of revisions.log, whichever strategy wrote them.
    """
    kind, _, name = described.partition(" ")
    if kind == "Branch" and name:
        return name
    if kind in ("Tag", "Commit", "Directory") and name:
        return f"{kind.lower()} {name}"
    return described


class _Slot:
    """One value of :func:`once_per_deploy`: computed by one host while the others wait."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = False
        self.value = self.error = None


class _PerDeploy:
    """The :func:`once_per_deploy` values of one flow, by key."""

    def __init__(self):
        self.lock = threading.Lock()
        self.slots = {}

    def slot(self, key):
        with self.lock:
            return self.slots.setdefault(key, _Slot())


def once_per_deploy(key, compute):
    """``compute()`` once per deploy (per flow) for all hosts; a failure is kept and re-raised to each.

    Only the key's own slot is held while computing (a build may take
    minutes; other keys need not wait), and a failure is not retried by
    every other host.
    """
    from ..engine import current_run as active_run

    run = active_run()
    if run is None:
        return compute()
    slot = run.flow().shared(_PerDeploy).slot(key)
    with slot.lock:
        if not slot.done:
            try:
                slot.value = compute()
            except Exception as e:
                slot.error = e
            slot.done = True
        if slot.error is not None:
            raise slot.error
        return slot.value
