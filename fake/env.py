"""The ``env`` of a fabfile: layered settings, per-host while a task runs.

A read looks through these layers, first hit wins (written down once, here):

1. values written while a task runs on this host (``env.x = ...`` in a task,
   ``settings()`` inside a task, and ``env.host`` and friends);
   then the values the running flow shows this host (``env.release_path`` and
   the others documented in docs/settings.rst), gone when the flow ends;
2. ``settings()`` blocks entered outside any host;
3. ``--set KEY=VALUE`` from the command line;
4. the keys of this host's selected roles in ``env.roledefs``, merged in ``-R`` order;
   then those of the roles a task's ``@roles`` or ``execute(roles=...)`` names,
   for that task (or flow) only;
5. values set by the fabfile (and anything else at import time);
6. defaults registered by libraries such as ``fake.tasks.deploy``.

Hosts run in threads; the active host's layer lives in a ContextVar, so a
value one host's task writes is never seen by another host.
"""

from contextlib import contextmanager
from contextvars import ContextVar

from .exceptions import MissingSetting

__all__ = ["Env", "CallableEnv", "HostScope", "settings", "role_overlay", "overlay_roles", "flow_values",
           "call_connection"]

_scope = ContextVar("fake_host_scope", default=None)
# Layer 4's second half: (role names, their values) of the running call.
_call_roles = ContextVar("fake_call_roles", default=None)
# Layer 1's second half: what the running flow shows this host (a dict it owns).
_flow_values = ContextVar("fake_flow_values", default=None)
# The connection of the running call, when its roles connect otherwise: (scope, connection).
_call_connection = ContextVar("fake_call_connection", default=None)
_MISSING = object()
_ABSENT = object()  # CallableEnv.get: not in env (None may be a value)


class HostScope:
    """What one host sees on top of the shared layers during one invocation."""

    def __init__(self, host, role_values=None, values=None):
        self.host = host
        self.role_values = dict(role_values or {})
        self.values = dict(values or {})
        self.default_connection = None

    @property
    def connection(self):
        """The running call's connection: the host's own, unless the call's roles connect otherwise."""
        call = _call_connection.get()
        if call is not None and call[0] is self:
            return call[1]
        return self.default_connection

    @connection.setter
    def connection(self, conn):
        self.default_connection = conn


def current_scope():
    return _scope.get()


@contextmanager
def host_scope(scope):
    """Make ``scope`` the active host layer for this thread's code."""
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


@contextmanager
def role_overlay(names, values):
    """The roles of the running call (``@roles``, ``execute(roles=)``) and their values, below ``-R``'s."""
    token = _call_roles.set((tuple(names or ()), dict(values or {})))
    try:
        yield
    finally:
        _call_roles.reset(token)


@contextmanager
def call_connection(scope, connection):
    """``scope.connection`` is ``connection`` for this block (a call whose roles log in otherwise)."""
    token = _call_connection.set((scope, connection))
    try:
        yield
    finally:
        _call_connection.reset(token)


@contextmanager
def flow_values(values):
    """Show ``values`` (the running flow's, for this host) in env for this block."""
    token = _flow_values.set(values)
    try:
        yield
    finally:
        _flow_values.reset(token)


def overlay_roles():
    """Names of the roles the running call added (inherited by what it runs inline)."""
    state = _call_roles.get()
    return state[0] if state else ()


class Env:
    """Attribute- and item-style access to the layered settings."""

    def __init__(self):
        object.__setattr__(self, "_global", {})
        object.__setattr__(self, "_top", {})
        object.__setattr__(self, "_overrides", {})
        object.__setattr__(self, "_defaults", {})

    # -- layers -------------------------------------------------------
    def _layers(self):
        # A list, not a generator: a deploy reads env about a hundred times per host.
        scope = _scope.get()
        if scope is None:
            return (self._top, self._overrides, self._global, self._defaults)
        shown = _flow_values.get()
        extra = _call_roles.get()
        layers = [scope.values]
        if shown:
            layers.append(shown)
        layers += (self._top, self._overrides, scope.role_values)
        if extra and extra[1]:
            layers.append(extra[1])
        layers += (self._global, self._defaults)
        return layers

    def _write_layer(self):
        scope = _scope.get()
        return scope.values if scope is not None else self._global

    def _lookup(self, key, default=_MISSING):
        for layer in self._layers():
            if key in layer:
                return layer[key]
        if default is _MISSING:
            scope = _scope.get()
            raise MissingSetting(key, scope.host if scope else None)
        return default

    # -- mapping and attribute access ----------------------------------
    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return self._lookup(key)

    def __setattr__(self, key, value):
        self._write_layer()[key] = value

    def __delattr__(self, key):
        self._write_layer().pop(key, None)

    __getitem__ = __getattr__
    __setitem__ = __setattr__
    __delitem__ = __delattr__

    def __contains__(self, key):
        for layer in self._layers():
            if key in layer:
                return True
        return False

    def get(self, key, default=None):
        return self._lookup(key, default)

    def keys(self):
        seen = {}
        for layer in self._layers():
            for key in layer:
                seen.setdefault(key, None)
        return list(seen)

    def items(self):
        return [(key, self.get(key)) for key in self.keys()]

    def update(self, values=(), **kwargs):
        layer = self._write_layer()
        layer.update(values, **kwargs)

    def setdefault(self, key, default=None):
        """Like dict.setdefault, on the layer writes go to."""
        if key not in self:
            setattr(self, key, default)
        return self._lookup(key)

    def setdefaults(self, **values):
        """Register library defaults; any fabfile or role value wins over them."""
        self._defaults.update(values)

    def set_overrides(self, values):
        """Values from ``--set``: they win over the fabfile and roles."""
        self._overrides.update(values)

    def reset(self):
        for layer in (self._global, self._top, self._overrides, self._defaults):
            layer.clear()

    def __repr__(self):
        return f"<Env {sorted(self.keys())}>"


class CallableEnv:
    """A view of an env whose reads call callable values and return the result.

    ``env = CallableEnv(env)`` in a fabfile: writes go to the wrapped env, so
    role-scoped and ``--set`` values still win over what the fabfile sets.
    """

    def __init__(self, env):
        object.__setattr__(self, "_env", env._env if isinstance(env, CallableEnv) else env)

    @staticmethod
    def _resolve(value):
        return value() if callable(value) else value

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return self._resolve(getattr(self._env, key))

    def __setattr__(self, key, value):
        setattr(self._env, key, value)

    def __delattr__(self, key):
        delattr(self._env, key)

    __getitem__ = __getattr__
    __setitem__ = __setattr__
    __delitem__ = __delattr__

    def __contains__(self, key):
        return key in self._env

    def get(self, key, default=None):
        value = self._env.get(key, _ABSENT)
        return default if value is _ABSENT else self._resolve(value)

    def raw(self, key, default=None):
        """The stored value without calling it."""
        return self._env.get(key, default)

    def __repr__(self):
        return f"<CallableEnv over {self._env!r}>"


def _unwrap(env):
    return env._env if isinstance(env, CallableEnv) else env


@contextmanager
def settings(env, **values):
    """Set env values for a block, then put back what was there before.

    Inside a task the values are the current host's; outside any host they
    are seen by every host until the block ends.
    """
    env = _unwrap(env)
    scope = _scope.get()
    layer = scope.values if scope is not None else env._top
    saved = {key: layer.get(key, _MISSING) for key in values}
    layer.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is _MISSING:
                layer.pop(key, None)
            else:
                layer[key] = old
