"""One invocation of ``fab``: its hosts, and running calls on them stage by stage.

A command-line task expands (``registry.expand``) into calls: its
before-hooks, itself, its after-hooks. Each call runs on every target host
before the next starts on any host; a flow (``deploy``) is the same one
level down (:mod:`fake.engine.flow`). When a call fails on some hosts the
others finish it and nothing later starts.

A Run composes the pieces, each with one job: :class:`~.scope.Scopes`
(env per host), :class:`~.pool.Pool` (connections),
:class:`~.scheduler.Scheduler` (threads, Ctrl-C), :class:`~.flow.FlowRunner`
and :class:`~.report.Report`.
"""

import threading
import time
import traceback
from contextlib import contextmanager
from contextvars import ContextVar

import invoke

from .. import roles as rolelib
from .. import settings
from ..env import call_connection, flow_values, overlay_roles
from ..exceptions import ConnectError, FakeError, StepFailed, TaskFailed, on_host
from ..output import NORMAL, QUIET, console, use_console
from ..registry import FlowCall
from ..transport.local import LOCAL
from .flow import FlowRunner, tasks_after
from .flowstate import FlowState, current_flow
from .pool import Pool
from .report import Report
from .scheduler import Scheduler
from .scope import Scopes, merge_roles

__all__ = ["Run", "current_run"]

_active = ContextVar("fake_run", default=None)


def current_run():
    """The run this code belongs to (None outside ``fab`` and ``execute()``)."""
    return _active.get()


def _as_root(config):
    """Give Invoke's root Config the ``_root``/``_keypath`` it assumes a root has.

    Invoke looks both up on every nested read (``config.run``,
    ``config.connect_kwargs``); a root has neither, and each miss builds
    an error text listing every key: about 20 per host per deploy.
    """
    if isinstance(config, invoke.config.DataProxy) and "_root" not in vars(config):
        config._set(_root=config, _keypath=())


class Run:
    """One invocation: selected hosts, their scopes and connections, and what happened."""

    def __init__(self, env, registry, config=None, hosts=(), roles=(), parallel=None,
                 debug=False, dry_run=False, lock_wait=None, take_lock=False):
        self.env = env
        self.registry = registry
        self.config = config if config is not None else invoke.Config()
        _as_root(self.config)
        self.hosts = list(hosts)
        self.debug = debug
        self.dry_run = dry_run
        self.lock_wait = lock_wait  # seconds a flow may wait for other runs' locks (--lock-wait)
        self.take_lock = take_lock  # take over a lock whose run is gone (--take-lock)
        self.scopes = Scopes(env, roles)
        self.pool = Pool(env, self.config)
        self.scheduler = Scheduler(parallel, say=lambda line: self.say(line, err=True))
        self.report = Report(hosts, roles, dry_run)
        self.flows = FlowRunner(self)
        self._outside = FlowState(run=self)  # once()/record() outside any flow: the run's own
        self._once_done = set()
        self.unreachable = {}  # host -> ConnectError: left out at connect, within max_fail
        self._once_lock = threading.Lock()
        self._token = None

    # -- lifecycle -------------------------------------------------------
    def __enter__(self):
        self._token = _active.set(self)
        return self

    def __exit__(self, *exc):
        _active.reset(self._token)
        self.pool.close()

    def carry(self):
        """What a worker thread needs from here: this run, its console and the running flow."""
        flow, out = current_flow(), console()

        def prepare():
            _active.set(self)
            use_console(out)
            if flow is not None:
                flow.activate()

        return prepare

    @property
    def had_flow(self):
        return self.report.had_flow

    @had_flow.setter
    def had_flow(self, value):
        self.report.had_flow = value

    # -- what tasks ask the run --------------------------------------------
    def flow(self):
        """The flow running here, or the run's own state outside flows."""
        flow = current_flow()
        return flow if flow is not None and flow.run is self else self._outside

    def run_state(self, cls):
        """The one ``cls()`` of this run, whatever flow asks (for what outlives a flow's try)."""
        return self._outside.shared(cls)

    def flow_hosts(self):
        """The hosts of the flow running here (the run's hosts outside flows)."""
        return list(self.flow().hosts or self.hosts)

    def tasks_after(self):
        return tasks_after(self.flow())

    def once(self, key, compute):
        """A value computed once per flow (per invocation outside flows), shared by all hosts."""
        return self.flow().once(key, compute)

    def record(self, key, host, value):
        """Keep a per-host fact of this flow that tasks on other hosts may read later."""
        table = self.once(("record", key), dict)
        with self._once_lock:
            table[host] = value

    def collect(self, key):
        table = self.once(("record", key), dict)
        with self._once_lock:
            return dict(table)

    def annotate(self, host, **facts):
        self.report.annotate(host, **facts)

    def note(self, host, text):
        self.report.note(host, text)

    def say(self, line, err=False):
        console().write(line, err=err, level=QUIET if err else NORMAL)

    # -- hosts -------------------------------------------------------------
    def call_roles(self, call, outer=()):
        """The roles a call runs under, weakest first: the caller's, the flow's, the task's
        ``@roles``, then ``execute(roles=)``'s."""
        return merge_roles(overlay_roles(), getattr(call, "inherited_roles", None), outer, self.flow().roles,
                           getattr(call.task, "roles", None), getattr(call, "roles", None))

    def targets(self, task, hosts):
        """The hosts a task runs on: its roles narrow the selection; None if it ran once already."""
        hosts = [h for h in hosts if h not in self.unreachable]
        if getattr(task, "primary", None):
            return self.primary_target(task, hosts)
        wanted = getattr(task, "roles", None)
        if wanted:
            roledefs = self.env.get("roledefs") or {}
            pool = hosts or rolelib.resolve(None, wanted, roledefs)
            hosts = [h for h in pool if set(rolelib.host_roles(roledefs, h)) & set(wanted)]
        if getattr(task, "runs_once", False):
            with self._once_lock:  # execute() may ask from several host threads at once
                if task.name in self._once_done:
                    return None
                self._once_done.add(task.name)
            hosts = hosts[:1]
        return hosts

    def primary_host(self, task):
        """The one host a ``@primary`` task runs on in the running flow (or run)."""
        flow = self.flow()
        pool = flow.alive if flow.call is not None else [h for h in self.hosts if h not in self.unreachable]
        role = task.primary
        if isinstance(role, str):
            listed = rolelib.resolve(None, [role], self.env.get("roledefs") or {}) if role in (
                self.env.get("roledefs") or {}) else []
            for host in listed:
                if host in pool:
                    return host
        return pool[0] if pool else None

    def primary_target(self, task, hosts):
        """[the primary host] if it is among ``hosts`` and the task has not run in this flow; else []."""
        host = self.primary_host(task)
        if host is None or host not in hosts:
            return []
        done = self.flow().once(("primary", task.name), set)
        with self._once_lock:
            if host in done:
                return None
            done.add(host)
        return [host]

    def connect_all(self, hosts):
        """Open every connection in parallel; a failure stops the run here, unless
        ``max_fail`` lets the flows go on without the hosts that cannot be reached."""

        def connect(host):
            with self.scopes.enter(host) as scope:
                return self.pool.connect(host, scope)

        try:
            self.on_hosts("connect", [h for h in hosts if h != LOCAL], connect, mark_ok=False)
        except StepFailed as e:
            with self.scopes.enter(hosts[0]):  # as flows read it: the first host's view, -R roles included
                budget = settings.share(self.env, "max_fail", len(hosts), default=0)
            if not budget or len(e.failures) > budget or not all(isinstance(x, ConnectError) for x in e.failures.values()):
                raise
            self.unreachable.update(e.failures)
            for host in e.failures:
                self.note(host, f"unreachable: left out (max_fail={budget}); nothing changed there")

    def on_hosts(self, label, hosts, fn, mark_ok=True):
        """fn(host) on each host in parallel; failures end the step as one StepFailed."""
        sched = self.scheduler
        fn = console().counting(fn)  # the stage's progress line, at scale
        results, failures, skipped = sched.map(hosts, fn, prepare=self.carry(), on_abort=self.aborting)
        self.report.settle(results if mark_ok else (), failures, skipped, sched.interrupted)
        if failures:
            raise StepFailed(label, failures, done=list(results), skipped=skipped)
        sched.check()
        return results

    def aborting(self, pending):
        """A second Ctrl-C: mark the hosts still running, and name the hosts to check."""
        self.report.settle(skipped=pending, interrupted=self.scheduler.interrupted)
        reached = ", ".join(self.pool.hosts()) or "none"
        self.say(f"aborting now: these hosts may be left locked or half-changed "
                 f"(check them, then unlock): {reached}", err=True)

    # -- running -------------------------------------------------------------
    def run_calls(self, calls, hosts, context=None):
        """Run calls in order on ``hosts``; {host: result} of the last call."""
        results = {}
        for call in calls:
            if isinstance(call, FlowCall):
                results = self.flows.run_flow(call, hosts)
            else:
                results = self.run_step(call, hosts, context)
        return results

    def run_step(self, call, hosts, context=None):
        targets = self.targets(call.task, hosts)
        if targets is None:
            return {}
        if not targets:
            if hosts or getattr(call.task, "roles", None):
                return {}  # hosts were selected, none of them in the task's roles
            return {None: self._call_without_host(call, context)}  # no hosts at all: runs here, like `inv`
        self.scheduler.check()
        if getattr(call.task, "noop", False) and not self.dry_run:
            return self._pass(call, targets)
        return self.on_hosts(call.name, targets, lambda h: self.call_on(call, h))

    def _pass(self, call, hosts):
        """A stage's own task does nothing on a host (its hooks do the work): count it
        done everywhere without a thread per host (eight stages, 200 hosts: 1,600 threads)."""
        tick, key = console().counting(lambda host: None), self.flow().stage or call.name
        for host in hosts:
            tick(host)
            self.report.timed(host, key, 0.0)  # the stage still has its row in --report
        self.report.settle(hosts)
        return dict.fromkeys(hosts)

    def _call_without_host(self, call, context=None):
        ctx = context if context is not None else invoke.Context(config=self.config)
        if self.dry_run and not getattr(call.task, "readonly", False):
            console().write(f"would run {call.name}")
            return None
        with self.on_host(None, call.name):
            return call.task(ctx, **call.kwargs)

    def call_on(self, call, host):
        """``call`` on ``host``, in its scope under the call's roles, on the connection for them."""
        started = time.monotonic()
        flow = self.flow()
        # The roles apply before connecting: a first connection takes the
        # user, port and key of the call's roles too.
        with self.scopes.enter(host, self.call_roles(call)) as scope, flow_values(flow.shown(host)):
            conn = self.pool.connect(host, scope)
            try:
                with call_connection(scope, conn), self.on_host(host, call.name):
                    if self.dry_run and not getattr(call.task, "readonly", False):
                        console().host_lines(host, [f"would run {call.name}"])
                        return None
                    return call.task(conn, **call.kwargs)
            finally:
                self.report.timed(host, flow.stage or call.name, time.monotonic() - started)

    @contextmanager
    def on_host(self, host, task=None):
        """Errors of a block as errors of ``host``; with ``task``, any exception fails the host."""
        try:
            yield
        except FakeError as e:
            raise on_host(host, e) from e
        except (Exception, SystemExit) as e:  # sys.exit() in a task fails that host
            if task is None:
                raise
            if self.debug:
                traceback.print_exc()
            raise TaskFailed(host, task, e) from e
