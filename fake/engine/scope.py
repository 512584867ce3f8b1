"""Each host's env layer for one invocation, and entering it: the one host-scope idiom.

A host's scope holds what its ``-R`` roles give it (evaluated once) and what
its tasks write. A call may add roles of its own (``@roles``,
``execute(roles=)``); their values apply to that call only, on top of the
``-R`` ones, and are evaluated once per host and role set.
"""

import contextvars
import threading
from contextlib import contextmanager

from .. import roles as rolelib
from ..env import HostScope, host_scope, overlay_roles, role_overlay
from ..exceptions import ConfigError, FakeError, on_host

__all__ = ["Scopes", "split_host", "merge_roles"]


def split_host(host_string):
    """``user@name:port`` -> (user, name, port); parts absent are None."""
    user, _, rest = host_string.rpartition("@")
    name, port = rest, None
    if rest.count(":") == 1:
        name, _, port = rest.partition(":")
    return user or None, name, port or None


def merge_roles(*groups):
    """Role names, weakest first; a name repeated keeps its last (strongest) place."""
    kept = []
    for name in reversed([name for group in groups for name in (group or ())]):
        if name not in kept:
            kept.append(name)
    return kept[::-1]


class Scopes:
    """The hosts' scopes of one invocation."""

    def __init__(self, env, selected_roles=()):
        self.env = env
        self.selected_roles = list(selected_roles)
        self._scopes = {}
        self._lock = threading.Lock()

    def get(self, host):
        """The host's scope (its ``-R`` roles' values included), made on first use."""
        with self._lock:
            scope = self._scopes.get(host)
            if scope is None:
                scope = self._scopes[host] = self._new(host)
            return scope

    def _new(self, host):
        roledefs = self.env.get("roledefs") or {}
        scope = HostScope(host)
        scope.merged_roles = list(self.selected_roles)
        scope.role_cache = {}  # extra roles (a tuple) -> their values on this host
        scope.role_lock = threading.Lock()
        scope.values.update(
            host=split_host(host)[1] if host else None,
            host_string=host,
            host_roles=rolelib.host_roles(roledefs, host) if host else [],
        )
        raw = rolelib.role_values(roledefs, host, self.selected_roles) if host else {}
        with host_scope(scope):
            scope.role_values = {k: (v() if callable(v) else v) for k, v in raw.items()}
        return scope

    def role_values(self, host, roles):
        """Values of ``roles`` for ``host`` beyond its ``-R`` roles (later roles win), once per host and set."""
        if not roles or not host:
            return {}
        scope = self.get(host)
        extra = tuple(r for r in roles if r not in scope.merged_roles)
        if not extra:
            return {}
        with scope.role_lock:  # one evaluation per host and role set, even from concurrent calls
            if extra not in scope.role_cache:
                raw = rolelib.role_values(self.env.get("roledefs") or {}, host, extra)
                scope.role_cache[extra] = _evaluate(raw, host, extra, _bare(scope))
            return scope.role_cache[extra]

    @contextmanager
    def enter(self, host, roles=()):
        """Run a block as ``host`` under ``roles``: its env layer, and the roles' values below ``-R``'s.

        Role errors name the host. With no host, the block runs with no host
        layer (the roles still apply where no host is needed).
        """
        try:
            values = self.role_values(host, roles)
        except FakeError as e:
            raise on_host(host, e) from e
        with host_scope(self.get(host) if host else None) as scope, role_overlay(roles, values):
            yield scope

    def all(self):
        with self._lock:
            return dict(self._scopes)


def caller_roles():
    """The roles the running call added (inherited by what it runs inline)."""
    return list(overlay_roles())


def _bare(scope):
    """A scope with only the host's own keys and ``-R`` values, to evaluate role callables in."""
    bare = HostScope(scope.host, role_values=scope.role_values)
    bare.values.update({k: scope.values[k] for k in ("host", "host_string", "host_roles") if k in scope.values})
    return bare


def _evaluate(raw, host, roles, bare):
    """Role values with callables called once, in a clean context (no caller's settings or roles)."""

    def run():
        with host_scope(bare):
            return {k: (v() if callable(v) else v) for k, v in raw.items()}

    try:
        return contextvars.Context().run(run)
    except FakeError:
        raise
    except Exception as e:
        raise ConfigError(f"a value of role {', '.join(roles)} in env.roledefs failed on {host}: "
                          f"{type(e).__name__}: {e}") from e
