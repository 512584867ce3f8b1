"""Per-host results of ``execute(task, ..., warn_only=True)``: failures collected, not raised.

As Fabric 1's ``warn_only`` meant "don't abort", a host that fails drops
out of the later calls (its hooks after the failing one) while the others
go on; the caller gets every host's value or error and decides.
"""

from ..exceptions import FakeError, StepFailed
from ..registry import FlowCall

__all__ = ["HostResults", "collect"]


class HostResults(dict):
    """``{host: value}``, where a failed host's value is its error; ``.successful()`` and ``.failures()``."""

    def __init__(self, values=None, errors=None):
        super().__init__(values or {})
        self._errors = dict(errors or {})
        self.update(self._errors)

    def successful(self):
        """``{host: value}`` of the hosts where the task ran to its end."""
        return {host: value for host, value in self.items() if host not in self._errors}

    def failures(self):
        """``{host: error}`` of the hosts where it failed (each error names its host)."""
        return dict(self._errors)

    def __repr__(self):
        return f"HostResults(successful={self.successful()!r}, failures={self._errors!r})"


def collect(run, calls, hosts):
    """``calls`` on ``hosts`` (each call on every host still going before the next): a HostResults."""
    if not hosts:  # no hosts at all: the task runs here, once
        try:
            return HostResults(run.run_calls(calls, []))
        except FakeError as e:
            return HostResults(errors={None: e})
    values, errors, live = {}, {}, list(hosts)
    for call in calls:
        if not live:
            break
        if isinstance(call, FlowCall):  # a flow keeps its stage barrier: it fails as a whole
            try:
                values = run.flows.run_flow(call, live)
            except StepFailed as e:
                errors.update({host: e.failures.get(host, e) for host in live})
                live, values = [], {}
            continue
        targets = run.targets(call.task, live)
        if not targets:
            values = {}
            continue
        run.scheduler.check()
        values, failed, skipped = run.scheduler.map(
            targets, lambda host: run.call_on(call, host), prepare=run.carry(), on_abort=run.aborting)
        run.report.settle(values, failed, skipped, run.scheduler.interrupted)
        run.scheduler.check()  # a Ctrl-C still stops the run
        errors.update(failed)
        live = [host for host in live if host not in failed]
    return HostResults({h: v for h, v in values.items() if h not in errors}, errors)


def collect_inline(run_inline, host):
    """The current host's own result (``execute`` without hosts, inside a task), collected the same way."""
    try:
        return HostResults(run_inline())
    except FakeError as e:
        return HostResults(errors={host: e})
