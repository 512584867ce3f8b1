"""The deploy and rollback flows as empty, named stages.

Stages do nothing themselves: ``fake.tasks.deploy`` and fabfiles fill them
with ``before()``/``after()``, and a fabfile task with a stage's name
replaces it. Each stage, with its hooks, finishes on every host before the
next stage starts on any host. The flows' bodies are empty too: the steps
read their arguments (``--release``, ``--force``) from the running flow.
"""

from ..registry import Task
from ..state import registry

__all__ = [
    "starting", "started", "updating", "updated", "publishing", "published",
    "finishing", "finished", "reverting", "reverted", "finishing_rollback",
    "failed", "ended", "deploy", "rollback", "DEPLOY", "ROLLBACK",
]


def _stage(name, doc):
    def body():
        pass

    body.__name__ = body.__qualname__ = name
    body.__doc__ = doc
    task = registry.add(Task(body, name=name))
    task.stage = True
    task.noop = True  # nothing to do on a host: see Run.run_step
    return task


starting = _stage("starting", "Start a deploy or rollback: check the hosts, take the lock.")
started = _stage("started", "Hook point: the hosts are checked and locked.")
updating = _stage("updating", "Create the new release: fetch the code, link shared paths.")
updated = _stage("updated", "Hook point: the new release is ready on every host (build, migrate).")
publishing = _stage("publishing", "Make the release live: switch the current symlink.")
published = _stage("published", "Hook point: the release is live on every host.")
finishing = _stage("finishing", "Log the revision and remove old releases.")
finished = _stage("finished", "Hook point: the deploy or rollback is done (restart services here).")
reverting = _stage("reverting", "Pick the release to roll back to.")
reverted = _stage("reverted", "Hook point: the rollback target is chosen.")
finishing_rollback = _stage("finishing_rollback", "Archive and remove the release rolled back from.")
failed = _stage("failed", "Runs on the hosts reached when a deploy or rollback fails.")
ended = _stage("ended", "Runs last, after success or failure: releases the lock.")

DEPLOY = ("starting", "started", "updating", "updated",
          "publishing", "published", "finishing", "finished")
ROLLBACK = ("starting", "started", "reverting", "reverted",
            "publishing", "published", "finishing_rollback", "finished")


@registry.flow(*DEPLOY, on_failure="failed", final="ended")
def deploy():
    """Deploy a new release to every selected host."""


@registry.flow(*ROLLBACK, on_failure="failed", final="ended")
def rollback(release=None, force=False):
    """Roll back to the previous release, or to --release NAME (--force: hosts that disagree too)."""
