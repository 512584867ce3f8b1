"""What one deploy or rollback knows about itself: typed objects kept by the flow, never env.

The engine's FlowState makes one :class:`DeployShared` per flow and one
:class:`DeployState` per host and flow, so ``fab deploy deploy`` starts
the second deploy clean, a misspelt field is an AttributeError rather than
a silent None, and a fabfile's env holds only what it put there. The few
values fabfiles may read (:data:`SHOWN`) are shown in each host's env while
the flow runs (:func:`show`), and are gone after it.
"""

import threading
import uuid
from dataclasses import dataclass, field

from ..output import console
from ..scm.base import Resolved
from ..state import env
from .commands import current_run
from .probe import HostState

__all__ = ["DeployState", "DeployShared", "SHOWN", "deploy_state", "shared", "states", "probed", "facts",
           "action", "show", "fleet", "banner"]

# Documented in docs/settings.rst: readable as env.<key> while a deploy or rollback runs.
SHOWN = ("deploy_action", "release_name", "release_path", "previous_release", "rolled_back_from")


@dataclass
class DeployState:
    """One host's part in one deploy or rollback."""

    probed: HostState | None = None  # what deploy:check read here; None until it has
    resolved: Resolved | None = None  # the revision this host's probe resolved (deploy)
    release: str | None = None  # the release deployed or rolled back to, once chosen
    created: str | None = None  # the release this deploy made; removed if never published
    previous_current: str | None = None  # current's link text before the flow, put back on failure
    rolled_back_from: str | None = None
    skip: bool = False  # rollback --force: this host has no target and stays as it is
    update_sent: bool = False  # the update command went out (its result may never have come back)
    update_done: bool = False  # ... and its result came back
    switch_sent: bool = False  # the switch command went out (its result may never have come back)
    published: bool = False  # current points at ``release`` (False again once switched back)
    finished: bool = False  # deploy:finish started: a failure now leaves the release live
    unlocked: bool = False  # the lock went with this flow's last command here
    removed_releases: list = field(default_factory=list)


@dataclass
class DeployShared:
    """What every host of one flow shares; each value is settled by the first host to need it.

    Settling holds a lock, so the others wait for the value; a failure is
    not kept, so every host that asks reports it.
    """

    lock_token: str | None = None
    release_name: str | None = None
    revision: Resolved | None = None  # the one revision every host deploys
    rollback_plan: tuple | None = None  # ({host: target or the reason there is none}, problems)
    banner_shown: bool = False
    finished: bool = False  # deploy:finish started on some host: the release stays live on all
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def _settle(self, name, compute):
        with self._lock:
            if getattr(self, name) is None:
                setattr(self, name, compute())
            return getattr(self, name)

    def token(self):
        """The run's lock token: only a lock holding it is this run's to remove.

        One for the whole run, not per flow: a flow tried again after
        --lock-wait must know a lock an earlier try left as its own.
        """
        return self._settle("lock_token", lambda: current_run().run_state(_RunToken).value)

    def agree_release_name(self, pick):
        return self._settle("release_name", pick)

    def agree_revision(self, agree):
        return self._settle("revision", agree)

    def agree_rollback_plan(self, plan):
        return self._settle("rollback_plan", plan)

    def claim_banner(self):
        """True for the first host to ask: that one prints the banner."""
        with self._lock:
            first, self.banner_shown = not self.banner_shown, True
            return first


def deploy_state(host=None):
    """This host's :class:`DeployState` in the running flow."""
    return current_run().flow().of_host(DeployState, host or env.host_string)


def shared():
    return current_run().flow().shared(DeployShared)


def states():
    """{host: DeployState} of this flow's hosts so far, in the flow's host order."""
    flow = current_run().flow()
    rank = {host: i for i, host in enumerate(flow.hosts)}
    return dict(sorted(flow.each_host(DeployState).items(), key=lambda item: rank.get(item[0], len(rank))))


def probed():
    """{host: HostState} of every host the probe read in this flow."""
    return {host: st.probed for host, st in states().items() if st.probed is not None}


def facts():
    """What the probe read on this host (nothing, if it has not run here)."""
    return deploy_state().probed or HostState()


def action():
    """'rollback' in a flow with a reverting stage, else 'deploy': read from the flow, not from env."""
    return "rollback" if current_run().flow().has_stage("reverting") else "deploy"


def show(**values):
    """Make ``values`` readable as env.<key> on this host until the flow ends."""
    unknown = set(values) - set(SHOWN)
    if unknown:
        raise ValueError(f"not a documented flow value: {', '.join(sorted(unknown))}")
    current_run().flow().shown(env.host_string).update(values)


def fleet():
    """'production: 3 host(s)': the roles given with -R (else the hosts) and how many hosts."""
    hosts = current_run().flow_hosts()
    roles = env.get("effective_roles") or []
    named = hosts if len(hosts) <= 5 else hosts[:3] + [f"... {len(hosts) - 4} more ...", hosts[-1]]
    return f"{','.join(roles) if roles else ','.join(named)}: {len(hosts)} host(s)"


def banner(text):
    """Print ``text`` as the flow's banner, once for all hosts."""
    if shared().claim_banner():
        console().banner(text)


class _RunToken:
    def __init__(self):
        self.value = uuid.uuid4().hex
