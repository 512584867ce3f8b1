"""Fake's Executor: Invoke's own pipeline, with each call run on all selected hosts at once.

Invoke's ``Executor.execute`` normalizes the command line, expands pre-
and post-tasks, dedupes (Fabric: never), loads the collection's and the
environment's config before each call, makes its context and autoprints.
All of that stays Invoke's. Fake overrides only :meth:`expand_calls`: a
task becomes its before-hooks, itself and its after-hooks
(``registry.expand``), each a :class:`HostsCall` that runs on every
selected host before the next starts.
"""

import invoke

from .. import hostselect
from .. import roles as rolelib
from .. import state
from ..engine import Run
from ..engine.limits import calm_gc
from ..exceptions import ConfigError
from ..registry import Call, Task
from .strategy import merge_free, strategy_of

__all__ = ["Executor", "HostsCall", "parse_set"]


def parse_set(text):
    """``a=1,b=x\\,y,flag`` -> {'a': '1', 'b': 'x,y', 'flag': True}."""
    values, item, escaped = {}, "", False
    items = []
    for ch in text or "":
        if escaped:
            item += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            items.append(item)
            item = ""
        else:
            item += ch
    items.append(item)
    for entry in items:
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not key.isidentifier():
            raise ConfigError(f"--set: {key!r} is not a valid setting name (in {entry!r})")
        values[key] = value if sep else True
    return values


def _flag_settings(args):
    """The settings that flags stand for (``--connect-limit``, ``-G``), when given."""
    values = {}
    limit = args["connect-limit"].value
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--connect-limit wants a number of connections >= 1, got {limit}")
        values["connect_limit"] = limit
    if args.gateway.value:
        values["gateway"] = args.gateway.value
    return values


def _seconds(flag, text):
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{flag} wants a number of seconds, got {text!r}")
    return value


class _OnHosts:
    """What Invoke calls for a :class:`HostsCall`: the Fake call, on its hosts, through the run."""

    def __init__(self, executor, call, hosts, printed):
        self.executor, self.call, self.hosts, self.printed = executor, call, hosts, printed
        self.name = call.name
        # Invoke prints a value it is handed; per-host values are printed here, one line each.
        self.autoprint = printed and not hosts

    def __call__(self, context):
        run = self.executor.run
        self.executor.begin()
        results = run.run_calls([self.call], self.hosts, context=context)
        if not self.hosts:
            return next(iter(results.values()), None)
        if self.printed:
            for host in self.hosts:
                if host in results:
                    print(results[host])
        return results

    def __repr__(self):
        return f"<on hosts: {self.name}>"


class HostsCall(invoke.Call):
    """One step of the run for Invoke's loop; equal to the command-line call it stands for."""

    def __init__(self, executor, call, hosts, origin=None):
        printed = origin is not None and getattr(origin.task, "autoprint", False)
        super().__init__(_OnHosts(executor, call, hosts, printed),
                         called_as=origin.called_as if origin is not None else None)
        self.origin = origin

    def __eq__(self, other):
        # Invoke asks `call in direct` to decide on autoprint.
        return other is self or (self.origin is not None and other is self.origin)

    __hash__ = object.__hash__


class Executor(invoke.Executor):
    """Roles and host selection, then Invoke's pipeline over :class:`HostsCall` steps."""

    run = None
    strategy = "linear"

    def execute(self, *tasks):
        args = self.core[0].args
        env = state.env
        env.set_overrides(dict(parse_set(args["set"].value), **_flag_settings(args)))
        cli_hosts, cli_roles = args.hosts.value, args.roles.value
        selected_roles = rolelib.split_names(cli_roles if cli_hosts or cli_roles else env.get("roles"))
        host_source = cli_hosts if cli_hosts or cli_roles else env.get("hosts")
        hosts = hostselect.select(host_source, selected_roles, env.get("roledefs") or {},
                                  exclude=args["exclude-hosts"].value)
        env.update(roles=selected_roles, effective_roles=selected_roles, all_hosts=hosts)
        parallel = args.parallel.value
        self.strategy = strategy_of(args.strategy.value)
        if parallel is not None and parallel < 1:
            raise ConfigError(f"-P/--parallel wants a number of hosts >= 1, got {parallel}")
        self.run = Run(env, state.registry, self.config, hosts=hosts, roles=selected_roles,
                       parallel=parallel, debug=bool(args.debug.value),
                       dry_run=bool(args["dry-run"].value or args.dry.value),
                       lock_wait=_seconds("--lock-wait", args["lock-wait"].value),
                       take_lock=bool(args["take-lock"].value))
        self._planned, self._begun = [], False
        from .console import setup_console  # the console needs the run's hosts for its secrets

        setup_console(args, env, self.config, self.run, self.collection.loaded_from)
        calm_gc()
        with self.run:
            return super().execute(*tasks)

    def expand_calls(self, calls, apply_hosts=True):
        """Pre-tasks, the task's steps on the selected hosts, post-tasks; then the ``--`` command.

        As under Fabric, pre- and post-tasks run once and without hosts.
        """
        hosts = self.run.hosts if apply_hosts else []
        steps = []
        for call in calls:
            if isinstance(call, invoke.Task):
                call = invoke.Call(task=call)
            steps.extend(self.expand_calls(call.pre, apply_hosts=False))
            for fake_call in state.registry.expand(call.task, call.kwargs):
                if fake_call.via is None and call.args:  # invoke.call(task, *args) as a pre-task
                    names = list(fake_call.task.argspec(fake_call.task.body).parameters)
                    fake_call.kwargs.update(zip(names, call.args))
                steps.append(self._step(fake_call, hosts, call if fake_call.via is None else None))
            steps.extend(self.expand_calls(call.post, apply_hosts=False))
        if apply_hosts and self.core.remainder:
            steps.append(self._step(self._remainder(), hosts))
        if apply_hosts and self.strategy == "free":
            steps = merge_free(self, steps)
        return steps

    def _step(self, call, hosts, origin=None):
        self._planned.append(call)
        return HostsCall(self, call, hosts, origin)

    def _remainder(self):
        if not self.run.hosts:
            raise ConfigError("was given a command after --, but no hosts: give -H HOST or -R ROLE")
        command = self.core.remainder

        def remainder():
            from ..operations import run

            run(command)

        return Call(Task(remainder, name="remainder"))

    def begin(self):
        """Before the first step: every flow's settings checked per host, then every connection."""
        if self._begun:
            return
        self._begun = True
        self.run.flows.preflight(self._planned, self.run.hosts)
        self.run.connect_all(self.run.hosts)
