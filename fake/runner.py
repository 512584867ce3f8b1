"""Run tasks on hosts: stage by stage, hosts in parallel, one connection each.

A command-line task expands (registry.expand) into calls: its before-hooks,
itself, its after-hooks. Each call runs on every target host before the next
call starts on any host. A flow (``deploy``) is the same, one level down:
each stage with its hooks is a call (see :mod:`fake.flows`). When a call
fails on some hosts the others finish it and nothing later starts.

A Run holds the invocation's hosts, their env scopes and their one pooled
connection each, and runs each call on its hosts in parallel threads.
"""

import contextvars
import threading
import time
import traceback
from collections import deque

import fabric
import invoke

from . import roles as rolelib
from .env import CallableEnv, HostScope, current_scope, host_scope, overlay_roles, role_overlay
from .exceptions import ConfigError, FakeError, Interrupted, StepFailed, TaskFailed, on_host
from .flows import FlowSteps, flow_state
from .registry import FlowCall
from .output import NORMAL, QUIET, console
from .settings import flag, number
from .transport.local import LOCAL
from .transport.ssh import open_target

__all__ = ["Run", "execute", "active_run", "MAX_PARALLEL"]

MAX_PARALLEL = 64
_active = None


def active_run():
    return _active


def split_host(host_string):
    """``user@name:port`` -> (user, name, port); parts absent are None."""
    user, _, rest = host_string.rpartition("@")
    name, port = rest, None
    if rest.count(":") == 1:
        name, _, port = rest.partition(":")
    return user or None, name, port or None


class Run(FlowSteps):
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

    def annotate(self, host, **facts):
        """Facts about a host for the summary and the JSON report."""
        with self._lock:
            self.info.setdefault(host, {}).update(facts)

    def note(self, host, text):
        """Something the summary should say about a host (e.g. 'reverted to X')."""
        with self._lock:
            self.notes.setdefault(host, []).append(text)

    # -- hosts -------------------------------------------------------------
    def scope(self, host):
        """The host's env layer for this invocation (its ``-R`` roles' values included)."""
        with self._lock:
            if host not in self.scopes:
                self.scopes[host] = self._new_scope(host)
            return self.scopes[host]

    def role_values(self, host, roles):
        """Values of ``roles`` for ``host`` beyond its ``-R`` roles (later roles win), once per host and set.

        They apply to one call or flow only (env.role_overlay), so a later
        task on the host never sees another task's roles; a callable value
        is evaluated once, like those of the ``-R`` roles.
        """
        if not roles or not host:
            return {}
        scope = self.scope(host)
        extra = tuple(r for r in roles if r not in scope.merged_roles)
        if not extra:
            return {}
        with scope.role_lock:  # one evaluation per host and role set, even from concurrent calls
            if extra not in scope.role_cache:
                raw = rolelib.role_values(self.env.get("roledefs") or {}, host, extra)
                scope.role_cache[extra] = _evaluate(raw, host, extra, self._bare_scope(host, scope))
            return scope.role_cache[extra]

    def _bare_scope(self, host, scope):
        """A scope with only the host's own keys and ``-R`` values, to evaluate role callables in."""
        bare = HostScope(host, role_values=scope.role_values)
        bare.values.update({k: scope.values[k] for k in ("host", "host_string", "host_roles") if k in scope.values})
        return bare

    def call_roles(self, call, outer=()):
        """The roles a call runs under, weakest first: the caller's, the flow's, the task's ``@roles``,
        then ``execute(roles=)``'s. A name keeps its last (strongest) place."""
        names = [*overlay_roles(), *(getattr(call, "inherited_roles", None) or ()), *outer,
                 *(self.shared.get("roles") or ()),
                 *(getattr(call.task, "roles", None) or ()), *(getattr(call, "roles", None) or ())]
        kept = []
        for name in reversed(names):
            if name not in kept:
                kept.append(name)
        return kept[::-1]

    def _new_scope(self, host):
        roledefs = self.env.get("roledefs") or {}
        scope = HostScope(host)
        scope.connection = None
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
                    port=None if port else number(settings, "port", minimum=1, whole=True),
                    key_filename=settings.get("key_filename"),
                    forward_agent=flag(settings, "forward_agent", default=None),
                    connect_timeout=number(settings, "connect_timeout", minimum=1),
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
        scope = self.scope(host)
        started = time.monotonic()
        try:
            roles = self.call_roles(call)
            values = self.role_values(host, roles)
        except FakeError as e:
            raise on_host(host, e) from e
        # The overlay is on before connecting: a first connection takes the
        # user, port and key of the call's roles too.
        with host_scope(scope), role_overlay(roles, values):
            conn = self.connect(host)
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
        flow = flow_state.get()  # worker threads start with an empty context: carry the flow over
        queue = deque(hosts)
        lock = threading.Lock()
        state = {"left": len(hosts)}
        done = threading.Event()

        def finish_one(n=1):
            state["left"] -= n
            if state["left"] <= 0:
                done.set()

        def worker():
            flow_state.set(flow)
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
        # The steps run in other threads: the calls carry the caller's roles, then these.
        inherited = list(overlay_roles())
        for call in calls:
            call.inherited_roles = inherited
            call.roles = rolelib.split_names(roles) if roles else []
        return run.run_calls(calls, targets)
    finally:
        if own:
            run.close()


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


def _bind_args(call, args):
    names = list(call.task.argspec(call.task.body).parameters)
    call.kwargs.update(zip(names, args))


def _inline(run, calls, scope):
    """Calls on the current host, in this thread (keeps its cd() and settings())."""
    host = scope.host
    result = None
    for call in calls:
        roles = run.call_roles(call)  # the calling task's roles, and this one's
        if isinstance(call, FlowCall):
            call.roles = roles  # its steps run in other threads: the flow carries them
            result = run.run_flow(call, [host])[host]
            continue
        if run.targets(call.task, [host]) in (None, []):
            continue
        try:
            with role_overlay(roles, run.role_values(host, roles)):
                result = call.task(scope.connection, **call.kwargs)
        except FakeError as e:
            raise on_host(host, e) from e
        except Exception as e:
            raise TaskFailed(host, call.name, e) from e
    return {host: result}
