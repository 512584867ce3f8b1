"""``execute()``: run a task with its hooks from a fabfile, on hosts or right here."""

import fabric

from .. import roles as rolelib
from ..env import call_connection, current_scope, overlay_roles
from ..registry import FlowCall
from .results import collect, collect_inline
from .run import Run, current_run

__all__ = ["execute"]


def execute(task, *args, hosts=None, roles=None, warn_only=False, **kwargs):
    """Run a task with its hooks; return ``{host: result}``.

    With no hosts or roles it runs on the current host (inside a task) or on
    the invocation's selected hosts; names are looked up now, so a fabfile
    task with a library task's name replaces it. ``warn_only=True`` collects
    failures instead of raising: a :class:`~.results.HostResults`.
    """
    from .. import state

    run = current_run()
    if run is None:
        with Run(state.env, state.registry, fabric.Config()) as own:
            return _execute(own, task, args, hosts, roles, kwargs, warn_only)
    return _execute(run, task, args, hosts, roles, kwargs, warn_only)


def _execute(run, task, args, hosts, roles, kwargs, warn_only=False):
    calls = run.registry.expand(task, kwargs)
    if args:
        main = next(c for c in calls if c.via is None)
        names = list(main.task.argspec(main.task.body).parameters)
        main.kwargs.update(zip(names, args))
    scope = current_scope()
    if hosts is None and roles is None:
        if scope is not None and scope.host:
            if warn_only:
                return collect_inline(lambda: _inline(run, calls, scope), scope.host)
            return _inline(run, calls, scope)
        targets = run.hosts
    else:
        targets = rolelib.resolve(hosts, roles, run.env.get("roledefs") or {})
    # The steps run in other threads: the calls carry the caller's roles, then these.
    inherited = list(overlay_roles())
    for call in calls:
        call.inherited_roles = inherited
        call.roles = rolelib.split_names(roles) if roles else []
    if warn_only:
        return collect(run, calls, targets)
    return run.run_calls(calls, targets)


def _inline(run, calls, scope):
    """Calls on the current host, in this thread (keeps its cd() and settings())."""
    host = scope.host
    result = None
    for call in calls:
        roles = run.call_roles(call)  # the calling task's roles, and this one's
        if isinstance(call, FlowCall):
            call.roles = roles  # its steps run in other threads: the flow carries them
            result = run.flows.run_flow(call, [host])[host]
            continue
        if run.targets(call.task, [host]) in (None, []):
            continue
        with run.scopes.enter(host, roles), run.on_host(host, call.name):
            conn = run.pool.connect(host, scope)
            with call_connection(scope, conn):
                result = call.task(conn, **call.kwargs)
    return {host: result}
