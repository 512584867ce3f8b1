"""Tasks by name, their before/after hooks, and expansion into what runs.

Hooks are stored by name and resolved when a run is planned, so a hook may
name a task defined later, and a fabfile task named like a library task
replaces it everywhere, hooks included.

A hook runs every time its target runs (unlike Capistrano, where a Rake task
runs once per invocation unless re-enabled); ``@runs_once`` is the opt-in
for "once per invocation".
"""

import inspect

import fabric.tasks
import invoke

from .env import current_scope
from .exceptions import HookCycle, UnknownTask

__all__ = ["Task", "Flow", "Registry", "Call", "FlowCall", "roles", "runs_once", "primary"]

CONTEXT_NAMES = frozenset(["c", "ctx", "context", "conn", "connection", "cxn"])


class Task(fabric.tasks.Task):
    """A Fabric task whose body may take a connection ``c`` first, or not.

    ``roles`` limits the hosts it runs on; ``runs_once`` runs it on one host
    once per invocation; ``readonly`` says it changes nothing, so it runs
    under ``--dry-run`` too. Calling the task object runs its body right here.
    """

    def __init__(self, body, *args, roles=None, runs_once=False, readonly=False, **kwargs):
        self.roles = list(roles or getattr(body, "_fake_roles", None) or [])
        self.runs_once = runs_once or getattr(body, "_fake_runs_once", False)
        self.primary = getattr(body, "_fake_primary", None)  # True, or a role name: see primary()
        self.readonly = readonly  # only reads hosts: runs under --dry-run too
        super().__init__(body, *args, **kwargs)

    def argspec(self, body):
        func = body if inspect.isfunction(body) or inspect.ismethod(body) else body.__call__
        sig = inspect.signature(func)
        params = list(sig.parameters.values())
        first = params[0] if params else None
        self.takes_context = (
            first is not None
            and first.name in CONTEXT_NAMES
            and first.default is inspect.Parameter.empty
        )
        return sig.replace(parameters=params[1:]) if self.takes_context else sig

    def __call__(self, *args, **kwargs):
        if args and isinstance(args[0], invoke.Context):
            ctx, args = args[0], args[1:]
        else:
            scope = current_scope()
            ctx = getattr(scope, "connection", None)
        self.times_called += 1
        if self.takes_context:
            return self.body(ctx, *args, **kwargs)
        return self.body(*args, **kwargs)


class Flow(Task):
    """A task made of other tasks that run stage by stage across all hosts.

    Each step finishes on every host before the next starts on any. If a
    step fails, ``on_failure`` runs on the hosts that were reached; ``final``
    runs at the end either way. The body receives the flow's command-line
    arguments and runs in each host's env before any connection (to check
    settings), then again as the flow starts, so it can set per-host values.
    """

    def __init__(self, body, steps, on_failure=None, final=None, **kwargs):
        self.steps = list(steps)
        self.on_failure = on_failure
        self.final = final
        super().__init__(body, **kwargs)


class Call:
    """One task to run on every target host, with its arguments."""

    def __init__(self, task, kwargs=None, via=None):
        self.task = task
        self.kwargs = dict(kwargs or {})
        self.via = via  # "before deploy" etc., for messages

    @property
    def name(self):
        return self.task.name

    def __repr__(self):
        return f"<Call {self.name}>"


class FlowCall(Call):
    def __init__(self, task, kwargs, body, on_failure, final):
        super().__init__(task, kwargs)
        self.body = body
        self.on_failure = on_failure
        self.final = final


def _mark(attr, value):
    def decorate(target):
        if isinstance(target, Task):
            setattr(target, attr.replace("_fake_", ""), value)
        else:
            setattr(target, attr, value)
        return target

    return decorate


def roles(*names):
    """Limit a task to hosts in these roles (``@roles('db')``)."""
    return _mark("_fake_roles", list(names))


def runs_once(target):
    """Run a task once per invocation, on the first of its hosts."""
    return _mark("_fake_runs_once", True)(target)


def primary(target=None):
    """Run a task on one host, once per flow (a migration, a notification).

    ``@primary``: the first selected host in host order. ``@primary('db')``:
    the first host listed in role ``db`` that is selected (the first
    selected host when none is). Hooked into a deploy that goes live in
    batches, it still runs once, not once per batch.
    """
    if isinstance(target, str):
        return _mark("_fake_primary", target)
    if target is None:
        return _mark("_fake_primary", True)
    return _mark("_fake_primary", True)(target)


def _key(name):
    """One spelling per task name: Invoke shows dashes, Python names use underscores."""
    return str(name).replace("-", "_")


def _name_of(ref):
    return ref if isinstance(ref, str) else getattr(ref, "name", repr(ref))


class Registry:
    def __init__(self):
        self.tasks = {}
        self._before = {}
        self._after = {}
        self._preflight = {}
        self._planners = {}

    def planner(self, flow, probe, plan):
        """How ``--dry-run`` previews a flow: ``probe()`` per host, read-only;
        then ``plan({host: state})`` returns ``{host: [lines]}``."""
        self._planners[_key(_name_of(flow))] = (probe, plan)

    def planner_for(self, flow):
        return self._planners.get(_key(_name_of(flow)))

    def reset(self):
        self.tasks.clear()
        self._before.clear()
        self._after.clear()
        self._preflight.clear()
        self._planners.clear()

    def preflight(self, flow, check):
        """Run ``check()`` per host, in its env, before any connection is made.

        For settings a flow cannot start without: a missing one fails the
        run before anything is touched anywhere.
        """
        self._preflight.setdefault(_name_of(flow), []).append(check)

    def preflight_checks(self, flow):
        return list(self._preflight.get(_name_of(flow), []))

    # -- registration ------------------------------------------------
    def add(self, task, name=None):
        self.tasks[_key(name or task.name)] = task
        return task

    def task(self, *args, **kwargs):
        """``@task`` / ``@task(name=..., roles=[...], runs_once=True, ...)``."""
        if len(args) == 1 and callable(args[0]) and not isinstance(args[0], Task) and not kwargs:
            return self.add(Task(args[0]))

        def decorate(body):
            klass = kwargs.pop("klass", Task)
            return self.add(klass(body, *args, **kwargs))

        return decorate

    def flow(self, *steps, on_failure=None, final=None, name=None):
        """Declare a flow: ``@flow('starting', 'started', ...)``."""

        def decorate(body):
            return self.add(
                Flow(body, steps, on_failure=on_failure, final=final, name=name)
            )

        return decorate

    def before(self, target, prereq):
        """Run ``prereq`` on the same host each time before ``target``."""
        self._hook(self._before, target, prereq, "before")

    def after(self, target, postreq):
        """Run ``postreq`` on the same host each time after ``target``."""
        self._hook(self._after, target, postreq, "after")

    def _hook(self, table, target, hook, kind):
        if isinstance(hook, str) or (isinstance(hook, Task) and self.tasks.get(_key(hook.name)) is hook):
            ref = hook if isinstance(hook, str) else hook.name
        elif isinstance(hook, Task):
            ref = hook
        elif callable(hook):
            ref = Task(hook, name=f"{kind}:{_name_of(target)}:{hook.__name__}")
        else:
            raise TypeError(f"{kind}({_name_of(target)!r}, {hook!r}): a hook must be a task, a task name or a callable")
        table.setdefault(self._canonical(_name_of(target)), []).append(ref)

    # -- lookup ------------------------------------------------------
    def _canonical(self, name):
        return _key(name)

    def get(self, ref, context=None):
        if isinstance(ref, Task) and not isinstance(ref, str):
            # Look a registered task up again by name: a later definition
            # with the same name replaces it.
            found = self.tasks.get(_key(ref.name))
            return found if found is not None else ref
        if isinstance(ref, invoke.Task):
            return ref
        name = self._canonical(ref)
        if name not in self.tasks:
            known = ", ".join(sorted(n for n in self.tasks if ":" not in n)) or "none"
            where = f" ({context})" if context else ""
            raise UnknownTask(f"no task named {ref!r}{where}; known tasks: {known}")
        return self.tasks[name]

    def hooks(self, name):
        """The (before, after) hook refs of a task, in registration order."""
        key = self._canonical(name)
        return list(self._before.get(key, [])), list(self._after.get(key, []))

    # -- expansion -----------------------------------------------------
    def expand(self, ref, kwargs=None, _stack=(), _via=None):
        """The calls that running ``ref`` means: hooks, the task, hooks.

        Flows stay one FlowCall holding their expanded steps, so the runner
        can run those stage by stage and handle failure for the whole flow.
        """
        task = self.get(ref, context=_via)
        name = task.name
        if name in _stack:
            raise HookCycle(list(_stack[_stack.index(name):]) + [name])
        stack = _stack + (name,)
        before, after = self.hooks(name)
        calls = []
        for hook in before:
            calls.extend(self.expand(hook, _stack=stack, _via=f"before({name!r}, {_name_of(hook)!r})"))
        if isinstance(task, Flow):
            body = [
                (_name_of(step), self.expand(step, _stack=stack, _via=f"step of flow {name!r}"))
                for step in task.steps
            ]
            on_failure = self.expand(task.on_failure, _stack=stack) if task.on_failure else []
            final = self.expand(task.final, _stack=stack) if task.final else []
            calls.append(FlowCall(task, kwargs, body, on_failure, final))
        else:
            calls.append(Call(task, kwargs, via=_via))
        for hook in after:
            calls.extend(self.expand(hook, _stack=stack, _via=f"after({name!r}, {_name_of(hook)!r})"))
        return calls
