"""Flows: running one stage by stage on all its hosts, its shared values, its clean-up.

A flow (``deploy``) runs each stage, with its hooks, on every host before
the next stage starts on any. When a stage fails on some hosts the others
finish it, nothing later starts, and the flow's ``on_failure`` and
``final`` calls run on the hosts that were reached. Values the hosts of one
flow share (the lock token, the release name, what each host's probe saw)
belong to that flow, not to the run: see :attr:`FlowSteps.shared`.

:class:`FlowSteps` is the part of :class:`fake.runner.Run` that does this.
"""

import time
from contextvars import ContextVar

from .env import host_scope, role_overlay
from .exceptions import FakeError, StepFailed, on_host
from .output import console
from .registry import FlowCall

__all__ = ["FlowSteps", "flow_state"]

flow_state = ContextVar("fake_flow_state", default=None)  # (run, that flow's shared dict)


class FlowSteps:
    """Flows and their shared state; mixed into Run, which has the hosts and the scheduler."""

    @property
    def shared(self):
        """This flow's shared values (once/record/stage); outside any flow, the run's.

        Each flow has its own, held in a ContextVar, so flows started at the
        same time (``execute('deploy')`` from a task on several hosts) never
        see each other's lock token, release name or stage.
        """
        state = flow_state.get()
        return state[1] if state is not None and state[0] is self else self._outside_flows

    def flow_hosts(self):
        """The hosts of the flow running here (the run's hosts outside flows)."""
        return list(self.shared.get("hosts") or self.hosts)

    def tasks_after(self):
        """The tasks this flow may still run after the current step on this host.

        The rest of its stages, its final calls, and its on-failure calls
        too: the step may yet fail on another host, and then they run here.
        None outside a flow. A task that would see the deploy state (a
        fabfile hook, say) among them means the flow is not done yet.
        """
        fcall, position = self.shared.get("flow"), self.shared.get("position")
        if fcall is not None and "cleanup_rest" in self.shared:  # in the failure clean-up or the final calls
            return [task for call in self.shared["cleanup_rest"] for task in _tasks_of(call)]
        if fcall is None or position is None:
            return None
        i, j = position
        later = list(fcall.body[i][1][j + 1:])
        for _, group in fcall.body[i + 1:]:
            later += group
        later += list(fcall.on_failure or []) + list(fcall.final or [])
        return [task for call in later for task in _tasks_of(call)]

    def record(self, key, host, value):
        """Keep a per-host fact that tasks on other hosts may read later."""
        with self._lock:
            self.shared.setdefault(key, {})[host] = value

    def collect(self, key):
        with self._lock:
            return dict(self.shared.get(key, {}))

    def once(self, key, compute):
        """A value computed once per flow (per invocation outside flows), shared by all hosts."""
        with self._lock:
            if key not in self.shared:
                self.shared[key] = compute()
            return self.shared[key]

    def preflight(self, calls, hosts, outer=()):
        """Flow bodies and checks, per host in its env, before any connection.

        Runs for every flow of the command line before connecting (so a
        missing setting touches nothing), and again as each flow starts, so
        the flow's body sets its values just before its own steps.
        """
        for call in calls:
            if not isinstance(call, FlowCall):
                continue
            checks = self.registry.preflight_checks(call.task)
            roles = self.call_roles(call, outer)
            for host in hosts or [None]:
                scope = self.scope(host) if host else None
                try:
                    values = self.role_values(host, roles)
                except FakeError as e:
                    raise on_host(host, e) from e
                with host_scope(scope), role_overlay(roles, values):
                    try:
                        task = call.task
                        task.body(None, **call.kwargs) if task.takes_context else task.body(**call.kwargs)
                        for check in checks:
                            check()
                    except FakeError as e:
                        raise on_host(host, e) from e
            for _, group in call.body:
                self.preflight(group, hosts, roles)

    def run_flow(self, fcall, hosts):
        """Run a flow's steps stage by stage; on failure clean up where reached."""
        self.preflight([fcall], hosts)
        self.had_flow = True
        if self.dry_run:
            return self.plan_flow(fcall, hosts)
        failure = None
        # once()/record() values are per flow; roles from execute(roles=) hold for all of its steps
        roles = self.call_roles(fcall)
        token = flow_state.set((self, {"hosts": list(hosts), "flow": fcall, "roles": roles}))
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
                    self._cleanup(fcall.on_failure, reached, failure, then=fcall.final)
            finally:
                if fcall.final and not self.aborted:
                    self._cleanup(fcall.final, reached, failure)
                flow_state.reset(token)

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
        roles = self.call_roles(fcall)
        token = flow_state.set((self, {"roles": roles}))
        try:
            probe, plan = planner

            def read(host):
                with host_scope(self.scope(host)), role_overlay(roles, self.role_values(host, roles)):
                    self.connect(host)
                    return probe()

            states, failures, _ = self._parallel(hosts, read)
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
            flow_state.reset(token)

    def _cleanup(self, calls, hosts, failure, then=None):
        """Best effort: every cleanup call runs on every reached host (``then`` follows them)."""
        with self._lock:
            self.shared["failure"] = failure
        for k, call in enumerate(calls):
            self.shared["cleanup_rest"] = list(calls[k + 1:]) + list(then or [])
            targets = self.targets(call.task, hosts) or []
            _, failures, _ = self._parallel(targets, lambda h: self._call_on(call, h), interruptible=False)
            for host, err in failures.items():
                self.say(f"[{host}] cleanup {call.name} failed too: {err}", err=True)


def _tasks_of(call):
    tasks = [call.task]
    if isinstance(call, FlowCall):
        for _, group in call.body:
            for inner in group:
                tasks += _tasks_of(inner)
        for inner in list(call.on_failure or []) + list(call.final or []):
            tasks += _tasks_of(inner)
    return tasks
