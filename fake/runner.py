"""Run tasks on hosts: stage by stage, hosts in parallel, one connection each.

A command-line task expands (registry.expand) into calls: its before-hooks,
itself, its after-hooks. Each call runs on every target host before the next
call starts on any host. A flow (``deploy``) is the same, one level down:
each stage with its hooks is a call. When a call fails on some hosts the
others finish it, nothing later starts, and the flow's ``on_failure`` and
``final`` calls run on the hosts that were reached.
"""

import threading
import time
import traceback
from collections import deque
from contextvars import ContextVar

import fabric
import invoke

from . import roles as rolelib
from .env import CallableEnv, HostScope, current_scope, flag, host_scope, number
from .exceptions import FakeError, Interrupted, StepFailed, TaskFailed, on_host
from .registry import FlowCall
from .output import NORMAL, QUIET, console
from .remote import LOCAL
from .ssh import open_target

__all__ = ["Run", "execute", "active_run", "MAX_PARALLEL"]

MAX_PARALLEL = 64
_active = None
_flow_state = ContextVar("fake_flow_state", default=None)  # (run, that flow's shared dict)


def active_run():
    return _active


def split_host(host_string):
    """``user@name:port`` -> (user, name, port); parts absent are None."""
    user, _, rest = host_string.rpartition("@")
    name, port = rest, None
    if rest.count(":") == 1:
        name, _, port = rest.partition(":")
    return user or None, name, port or None


class Run:
    """One invocation of ``fab``: its hosts, connections and per-host env."""

    def __init__(self, env, registry, config=None, hosts=(), roles=(), parallel=None,
                 debug=False, dry_run=False):
        self.env = env
        self.registry = registry
        self.config = config if config is not None else invoke.Config()
        self.hosts = list(hosts)
        self.selected_roles = list(roles)
        self.parallel = parallel
        self.debug = debug
        self.dry_run = dry_run
        self.had_flow = False
        self.started = time.monotonic()
        self.timings = {}  # host -> {stage or task: seconds}
        self.info = {}  # host -> {"release": ..., "commit": ...} for the summary and report
        self.scopes = {}
        self.connections = {}
        self.outcome = {}  # host -> "ok" or the error that stopped it
        self.notes = {}  # host -> [text] for the summary
        self.once_done = set()
        self._outside_flows = {}
        self.interrupted = None
        self.aborted = False
        self._lock = threading.RLock()
        self._host_locks = {}

    # -- lifecycle -------------------------------------------------------
    def __enter__(self):
        global _active
        self._previous, _active = _active, self
        return self

    def __exit__(self, *exc):
        global _active
        _active = self._previous
        self.close()

    def close(self):
        for conn in list(self.connections.values()):
            try:
                conn.close()
            except Exception:
                pass
        self.connections.clear()

    @property
    def shared(self):
        """This flow's shared values (once/record/stage); outside any flow, the run's.

        Each flow has its own, held in a ContextVar, so flows started at the
        same time (``execute('deploy')`` from a task on several hosts) never
        see each other's lock token, release name or stage.
        """
        state = _flow_state.get()
        return state[1] if state is not None and state[0] is self else self._outside_flows

    def flow_hosts(self):
        """The hosts of the flow running here (the run's hosts outside flows)."""
        return list(self.shared.get("hosts") or self.hosts)

    def tasks_after(self):
        """The tasks this flow still runs after the current step, its final ones included.

        None outside a flow. A task that would see the deploy state (a
        fabfile hook, say) among them means the flow is not done yet.
        """
        fcall, position = self.shared.get("flow"), self.shared.get("position")
        if fcall is None or position is None:
            return None
        i, j = position
        later = list(fcall.body[i][1][j + 1:])
        for _, group in fcall.body[i + 1:]:
            later += group
        later += list(fcall.final or [])
        return [task for call in later for task in _tasks_of(call)]

    def record(self, key, host, value):
        """Keep a per-host fact that tasks on other hosts may read later."""
        with self._lock:
            self.shared.setdefault(key, {})[host] = value

    def collect(self, key):
        with self._lock:
            return dict(self.shared.get(key, {}))

    def annotate(self, host, **facts):
        """Facts about a host for the summary and the JSON report."""
        with self._lock:
            self.info.setdefault(host, {}).update(facts)

    def note(self, host, text):
        """Something the summary should say about a host (e.g. 'reverted to X')."""
        with self._lock:
            self.notes.setdefault(host, []).append(text)

    def once(self, key, compute):
        """A value computed once per flow (per invocation outside flows), shared by all hosts."""
        with self._lock:
            if key not in self.shared:
                self.shared[key] = compute()
            return self.shared[key]

    # -- hosts -------------------------------------------------------------
    def scope(self, host, roles=()):
        """The host's env layer; ``roles`` (from execute() or @roles) add
        their values below those of the ``-R`` roles."""
        with self._lock:
            if host not in self.scopes:
                self.scopes[host] = self._new_scope(host)
            scope = self.scopes[host]
            extra = [r for r in roles if r not in scope.merged_roles]
            if extra:
                scope.merged_roles.extend(extra)
                roledefs = self.env.get("roledefs") or {}
                raw = rolelib.role_values(roledefs, host, extra)
                with host_scope(scope):
                    for key, value in raw.items():
                        scope.role_values.setdefault(key, value() if callable(value) else value)
            return scope

    def _new_scope(self, host):
        roledefs = self.env.get("roledefs") or {}
        scope = HostScope(host)
        scope.connection = None
        scope.merged_roles = list(self.selected_roles)
        scope.values.update(
            host=split_host(host)[1] if host else None,
            host_string=host,
            host_roles=rolelib.host_roles(roledefs, host) if host else [],
        )
        raw = rolelib.role_values(roledefs, host, self.selected_roles) if host else {}
        with host_scope(scope):
            scope.role_values = {k: (v() if callable(v) else v) for k, v in raw.items()}
        return scope

    def connect(self, host):
        """The host's one connection, opened on first use."""
        with self._lock:
            lock = self._host_locks.setdefault(host, threading.Lock())
        with lock:
            conn = self.connections.get(host)
            if conn is not None:
                return conn
            scope = self.scope(host)
            with host_scope(scope):
                user, _, port = split_host(host)
                settings = CallableEnv(self.env)  # connection settings may be callables too
                conn = open_target(
                    host,
                    self.config,
                    user=None if user else settings.get("user"),
                    port=None if port else number("port", settings.get("port"), 1),
                    key_filename=settings.get("key_filename"),
                    forward_agent=flag("forward_agent", settings.get("forward_agent")),
                    connect_timeout=number("connect_timeout", settings.get("connect_timeout"), 1),
                )
            self.connections[host] = conn
            scope.connection = conn
            return conn

    def connect_all(self, hosts):
        """Open every connection in parallel; any failure stops the run here."""
        remote = [h for h in hosts if h != LOCAL]
        if not remote:
            return
        results, failures, _ = self._parallel(remote, self.connect)
        for host, err in failures.items():
            self.outcome[host] = err
        if failures:
            raise StepFailed("connect", failures, done=list(results))
        if self.interrupted:
            raise Interrupted(self.interrupted)

    def targets(self, task, hosts):
        """The hosts a task runs on: its roles narrow the selection."""
        wanted = getattr(task, "roles", None)
        if wanted:
            roledefs = self.env.get("roledefs") or {}
            pool = hosts or rolelib.resolve(None, wanted, roledefs)
            hosts = [h for h in pool if set(rolelib.host_roles(roledefs, h)) & set(wanted)]
            for host in hosts:
                self.scope(host, roles=wanted)
        if getattr(task, "runs_once", False):
            with self._lock:  # execute() may ask from several host threads at once
                if task.name in self.once_done:
                    return None
                self.once_done.add(task.name)
            hosts = hosts[:1]
        return hosts

    # -- running -------------------------------------------------------------
    def run_calls(self, calls, hosts):
        """Run calls in order on ``hosts``; {host: result} of the last call."""
        results = {}
        for call in calls:
            if isinstance(call, FlowCall):
                results = self.run_flow(call, hosts)
            else:
                results = self.run_step(call, hosts)
        return results

    def run_step(self, call, hosts):
        targets = self.targets(call.task, hosts)
        if targets is None:
            return {}
        if not targets:
            if hosts or getattr(call.task, "roles", None):
                return {}  # hosts were selected, none of them in the task's roles
            return {None: self._call_without_host(call)}  # no hosts at all: runs here, like `inv`
        if self.interrupted:
            raise Interrupted(self.interrupted)
        results, failures, skipped = self._parallel(targets, lambda h: self._call_on(call, h))
        for host in skipped:
            self.outcome[host] = Interrupted(self.interrupted or "SIGINT")
        for host in results:
            self.outcome.setdefault(host, "ok")
        for host, err in failures.items():
            self.outcome[host] = err
        if failures:
            raise StepFailed(call.name, failures, done=list(results), skipped=skipped)
        if self.interrupted:
            raise Interrupted(self.interrupted)
        return results

    def _call_without_host(self, call):
        ctx = invoke.Context(config=self.config)
        try:
            return call.task(ctx, **call.kwargs)
        except FakeError:
            raise
        except (Exception, SystemExit) as e:
            if self.debug:
                traceback.print_exc()
            raise TaskFailed(None, call.name, e) from e

    def _call_on(self, call, host):
        conn = self.connect(host)
        scope = self.scope(host)
        started = time.monotonic()
        with host_scope(scope):
            try:
                if self.dry_run and not getattr(call.task, "readonly", False):
                    console().host_lines(host, [f"would run {call.name}"])
                    return None
                return call.task(conn, **call.kwargs)
            except FakeError as e:
                raise on_host(host, e) from e
            except (Exception, SystemExit) as e:  # sys.exit() in a task fails that host
                if self.debug:
                    traceback.print_exc()
                raise TaskFailed(host, call.name, e) from e
            finally:
                key = self.shared.get("stage") or call.name
                with self._lock:
                    per_host = self.timings.setdefault(host, {})
                    per_host[key] = per_host.get(key, 0.0) + time.monotonic() - started

    def preflight(self, calls, hosts):
        """Flow bodies and checks, per host in its env, before any connection.

        Runs for every flow of the command line before connecting (so a
        missing setting touches nothing), and again as each flow starts, so
        the flow's body sets its values just before its own steps.
        """
        for call in calls:
            if not isinstance(call, FlowCall):
                continue
            checks = self.registry.preflight_checks(call.task)
            for host in hosts or [None]:
                scope = self.scope(host) if host else None
                with host_scope(scope):
                    try:
                        task = call.task
                        task.body(None, **call.kwargs) if task.takes_context else task.body(**call.kwargs)
                        for check in checks:
                            check()
                    except FakeError as e:
                        raise on_host(host, e) from e
            for _, group in call.body:
                self.preflight(group, hosts)

    def run_flow(self, fcall, hosts):
        """Run a flow's steps stage by stage; on failure clean up where reached."""
        self.preflight([fcall], hosts)
        self.had_flow = True
        if self.dry_run:
            return self.plan_flow(fcall, hosts)
        failure = None
        token = _flow_state.set((self, {"hosts": list(hosts), "flow": fcall}))  # once()/record() values are per flow
        try:
            for i, (stage, group) in enumerate(fcall.body):
                self.shared["stage"] = stage
                started = time.monotonic()
                with console().spin(stage):
                    for j, call in enumerate(group):
                        self.shared["position"] = (i, j)
                        self.run_calls([call], hosts)
                if hosts:
                    console().stage(stage, time.monotonic() - started)
            return {h: "ok" for h in hosts}
        except BaseException as e:
            failure = e
            raise
        finally:
            reached = [h for h in hosts if h in self.connections]
            try:
                if self.aborted:
                    pass  # a second Ctrl-C: no clean-up while commands may still run
                elif failure is not None and fcall.on_failure:
                    self._cleanup(fcall.on_failure, reached, failure)
            finally:
                if fcall.final and not self.aborted:
                    self._cleanup(fcall.final, reached, failure)
                _flow_state.reset(token)

    def plan_flow(self, fcall, hosts):
        """--dry-run: read each host's state, then say what the flow would do.

        The flow's planner (registered by the library that fills it) reads
        with read-only commands and decides locally; nothing is changed.
        """
        from .registry import render_tree

        planner = self.registry.planner_for(fcall.task)
        console().write(f"dry run: {fcall.name} on {len(hosts)} host(s); steps and hooks in order:")
        console().write(render_tree(self.registry, fcall.task.name, indent="  "))
        if planner is None or not hosts:
            return {}
        token = _flow_state.set((self, {}))
        try:
            probe, plan = planner

            def read(host):
                with host_scope(self.scope(host)):
                    return probe()

            states, failures, _ = self._parallel(hosts, lambda h: (self.connect(h), read(h))[1])
            for host, err in failures.items():
                self.outcome[host] = err
            if failures:
                raise StepFailed(f"{fcall.name} (dry run)", failures, done=list(states))
            lines = plan(states)
            for host in hosts:
                console().host_lines(host, lines.get(host, []))
                self.outcome[host] = "ok"
            return states
        finally:
            _flow_state.reset(token)

    def _cleanup(self, calls, hosts, failure):
        """Best effort: every cleanup call runs on every reached host."""
        with self._lock:
            self.shared["failure"] = failure
        for call in calls:
            targets = self.targets(call.task, hosts) or []
            _, failures, _ = self._parallel(targets, lambda h: self._call_on(call, h), interruptible=False)
            for host, err in failures.items():
                self.say(f"[{host}] cleanup {call.name} failed too: {err}", err=True)

    def say(self, line, err=False):
        console().write(line, err=err, level=QUIET if err else NORMAL)

    def _parallel(self, hosts, fn, interruptible=True):
        """fn(host) for each host, at most ``parallel`` at once, in host order.

        Returns (results, failures, skipped). A first Ctrl-C lets commands in
        flight finish and starts nothing new; a second aborts at once.
        """
        results, failures, skipped = {}, {}, []
        if not hosts:
            return results, failures, skipped
        width = max(1, min(self.parallel or MAX_PARALLEL, MAX_PARALLEL, len(hosts)))
        flow = _flow_state.get()  # worker threads start with an empty context: carry the flow over
        queue = deque(hosts)
        lock = threading.Lock()
        state = {"left": len(hosts)}
        done = threading.Event()

        def finish_one(n=1):
            state["left"] -= n
            if state["left"] <= 0:
                done.set()

        def worker():
            _flow_state.set(flow)
            while True:
                with lock:
                    if not queue:
                        return
                    host = queue.popleft()
                try:
                    results[host] = fn(host)
                except BaseException as e:  # reported per host, never lost
                    failures[host] = e
                finally:
                    with lock:
                        finish_one()

        for _ in range(width):
            threading.Thread(target=worker, daemon=True).start()
        while True:
            try:
                while not done.wait(0.1):
                    pass
                break
            except KeyboardInterrupt as e:
                signame = getattr(e, "signame", "SIGINT")
                if not interruptible or self.interrupted:
                    self.interrupted = self.interrupted or signame
                    self.aborted = True
                    with lock:
                        for host in hosts:
                            if host not in results and host not in failures:
                                self.outcome[host] = Interrupted(signame)
                    reached = ", ".join(self.connections) or "none"
                    self.say(f"aborting now: these hosts may be left locked or half-changed "
                             f"(check them, then unlock): {reached}", err=True)
                    raise Interrupted(self.interrupted) from None
                self.interrupted = signame
                self.say(f"interrupted ({signame}): letting running commands finish; "
                         "press Ctrl-C again to abort at once", err=True)
                with lock:
                    skipped.extend(queue)
                    n = len(queue)
                    queue.clear()
                    if n:
                        finish_one(n)
        return results, failures, skipped


def execute(task, *args, hosts=None, roles=None, **kwargs):
    """Run a task with its hooks; return ``{host: result}``.

    With no hosts or roles it runs on the current host (inside a task) or on
    the invocation's selected hosts; names are looked up now, so a fabfile
    task with a library task's name replaces it.
    """
    from . import state

    run = active_run()
    own = run is None
    if own:
        run = Run(state.env, state.registry, fabric.Config())
    try:
        calls = run.registry.expand(task, kwargs)
        if args:
            main = next(c for c in calls if c.via is None)
            main.args = args
            _bind_args(main, args)
        scope = current_scope()
        if hosts is None and roles is None:
            if scope is not None and scope.host:
                return _inline(run, calls, scope)
            targets = run.hosts
        else:
            targets = rolelib.resolve(hosts, roles, run.env.get("roledefs") or {})
            for host in targets:
                run.scope(host, roles=rolelib.split_names(roles))
        return run.run_calls(calls, targets)
    finally:
        if own:
            run.close()


def _tasks_of(call):
    tasks = [call.task]
    if isinstance(call, FlowCall):
        for _, group in call.body:
            for inner in group:
                tasks += _tasks_of(inner)
        for inner in list(call.on_failure or []) + list(call.final or []):
            tasks += _tasks_of(inner)
    return tasks


def _bind_args(call, args):
    names = list(call.task.argspec(call.task.body).parameters)
    call.kwargs.update(zip(names, args))


def _inline(run, calls, scope):
    """Calls on the current host, in this thread (keeps its cd() and settings())."""
    host = scope.host
    result = None
    for call in calls:
        if isinstance(call, FlowCall):
            result = run.run_flow(call, [host])[host]
            continue
        if run.targets(call.task, [host]) in (None, []):
            continue
        try:
            result = call.task(scope.connection, **call.kwargs)
        except FakeError as e:
            raise on_host(host, e) from e
        except Exception as e:
            raise TaskFailed(host, call.name, e) from e
    return {host: result}
