"""The ``fab`` (and ``fake``) program: Fabric's own, with roles, flows and a console.

Everything stock ``fab`` does keeps working; this adds ``-R/--roles``,
``-P/--parallel``, ``--set`` and the flags below, runs tasks through
:class:`~fake.cli.executor.Executor`, and is the one place where a
FakeError becomes a message and an exit status. Invoke's ``--dry`` loses
its ``-R`` short flag to ``--roles`` (Fabric 1's meaning of ``-R``).
"""

import logging
import os
import signal
import sys
import traceback

import fabric
import fabric.main
import invoke
import paramiko
from invoke import Argument, Exit, Task as InvokeTask

from .. import __version__, state
from ..exceptions import FakeError, Interrupted, SomeHostsFailed
from ..output import QUIET, VERBOSE, console
from ..signals import before_work
from ..tree import render_tree
from .executor import Executor
from .init import run_init
from .report import next_step, summary_table, write_report

__all__ = ["Fab", "make_program", "program", "main"]


class Fab(fabric.main.Fab):
    def core_args(self):
        args = []
        for arg in super().core_args():
            if "dry" in arg.names:
                # -R means roles here (as in Fabric 1); echo-only cannot plan a deploy.
                arg = Argument(names=("dry",), kind=bool, help="The same as --dry-run.")
            args.append(arg)
        return args + [
            Argument(names=("R", "roles"),
                     help="Comma-separated role(s) from env.roledefs to run against."),
            Argument(names=("P", "parallel"), kind=int,
                     help="Run on at most this many hosts at once (default: all, as far as "
                          "the open-files limit allows)."),
            Argument(names=("x", "exclude-hosts"),
                     help="Comma-separated host(s) to leave out; each may be a shell-style pattern."),
            Argument(names=("connect-limit",), kind=int,
                     help="Start at most this many SSH connections at once (default 30)."),
            Argument(names=("G", "gateway"),
                     help="Reach hosts without a ProxyJump through this bastion ([user@]host[:port]), "
                          "one connection for all of them."),
            Argument(names=("set",),
                     help="Set env values, KEY=VALUE[,KEY=VALUE...]; wins over the fabfile."),
            Argument(names=("v", "verbose"), kind=bool,
                     help="Show every command and its output, prefixed [host]."),
            Argument(names=("q", "quiet"), kind=bool, help="Show only failures and the summary."),
            Argument(names=("dry-run",), kind=bool,
                     help="Change nothing: read each host's state and print what would happen."),
            Argument(names=("lock-wait",),
                     help="Wait up to this many seconds for another run's deploy lock instead of failing."),
            Argument(names=("take-lock",), kind=bool,
                     help="Take over a deploy lock whose run is gone (same machine, its pid not running)."),
            Argument(names=("strategy",),
                     help="linear (default): each task on every host before the next; "
                          "free: each host runs its own tasks in order without waiting (not flows)."),
            Argument(names=("tree",), help="Print a task or flow with its hooks, and exit."),
            Argument(names=("report",), help="Write a JSON report of the run to this file."),
        ]

    def print_version(self):
        print(f"Fake {__version__}")
        print(f"Fabric {fabric.__version__}")
        print(f"Paramiko {paramiko.__version__}")
        print(f"Invoke {invoke.__version__}")

    def load_collection(self):
        try:
            super().load_collection()
        except Exit:
            raise
        except Exception as e:  # FakeError too: Invoke would show it as a traceback
            self._bail(e, "could not load the fabfile")
        if getattr(self, "collection", None) is not None:
            self._merge_registry(self.collection)

    def _merge_registry(self, collection):
        """Registry tasks join the collection; collection tasks join the registry.

        So ``--list`` shows hook-only tasks such as ``deploy:check``, and
        hooks may name plain ``fabric.task`` tasks of the fabfile.
        """
        registry = state.registry
        for name in collection.task_names:
            task = collection[name]
            canonical = registry._canonical(name)
            if canonical not in registry.tasks and isinstance(task, InvokeTask):
                registry.add(task, name=name)
        listed = {collection[n].name for n in collection.task_names if isinstance(collection[n], InvokeTask)}
        for name, task in registry.tasks.items():
            if name not in listed and name not in collection.task_names and not task.name.startswith("remainder"):
                try:
                    collection.add_task(task, name=name)
                except ValueError:
                    pass

    def update_config(self, merge=True):
        super().update_config()
        if self.args.dry.value:
            # Invoke's --dry echoes commands instead of running them; Fake
            # reads hosts to plan, so --dry means --dry-run here.
            self.config.run.dry = False

    def parse_core(self, argv):
        super().parse_core(argv)
        if not self.args.debug.value:
            # Paramiko logs connection failures with tracebacks; we report
            # them as one line per host instead (all of it under --debug).
            logging.getLogger("paramiko").addHandler(logging.NullHandler())
            logging.getLogger("paramiko").propagate = False

    def parse_tasks(self):
        # Fabric 1 users type task names with underscores; Invoke lists them
        # with dashes. Accept both.
        names = set(self.collection.task_names)
        self.core.unparsed = [
            tok.replace("_", "-") if tok not in names and tok.replace("_", "-") in names else tok
            for tok in self.core.unparsed
        ]
        super().parse_tasks()

    def no_tasks_given(self):
        if not self.args.tree.value:
            super().no_tasks_given()

    def execute(self):
        # From here on a signal is handled: running commands finish, then the clean-up runs.
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _sigterm)
        if self.args.tree.value:
            try:
                print(render_tree(state.registry, self.args.tree.value))
            except FakeError as e:
                self._bail(e)
            return
        executor = self.executor_class(self.collection, self.config, self.core)
        error, context, stop = None, None, None
        try:
            executor.execute(*self.tasks)
        except Exit as e:
            stop = e
        except KeyboardInterrupt as e:
            error = Interrupted(getattr(e, "signame", "SIGINT"))
        except FakeError as e:
            error = e
        except Exception as e:
            error, context = e, "unexpected error"
        late = _Late()  # the work is over: a signal now must not cut the summary or the report short
        run = executor.run
        if error is None and stop is None and run is not None and run.report.degraded:
            error = SomeHostsFailed(run.report.degraded, len(run.report.hosts))  # exit 2: done, not everywhere
        try:
            if stop is not None:
                raise stop
            if error is not None:
                self._bail(error, context, run=run)
        finally:
            self._finish(run, error)
        if late.signame:
            raise Exit(f"interrupted by {late.signame} after the run had finished (nothing was cut short)",
                       Interrupted(late.signame).exit_code)

    def _finish(self, run, error):
        """The success summary, the JSON report and the log's last line, whatever happened."""
        out = console()
        report = run.report if run is not None else None
        if report is not None and error is None and report.had_flow and report.hosts:
            out.write(summary_table(report), level=QUIET)
        path = self.args.report.value
        if path and report is not None:
            try:
                write_report(path, report, error, self.argv)
            except OSError as e:
                out.write(f"could not write the report {path}: {e}", err=True, level=QUIET)
        out.write(f"fab finished: {'ok' if error is None else 'failed: ' + (str(error).splitlines() or [type(error).__name__])[0]}",
                  level=VERBOSE + 1)
        out.close()

    def _bail(self, error, context=None, run=None):
        """Turn an error into one message and an exit status; traceback only with --debug."""
        debug = bool(self.args.debug.value) if getattr(self, "core", None) else False
        if debug:
            traceback.print_exception(type(error), error, error.__traceback__)
        fake = isinstance(error, FakeError)
        message = str(error) if fake else f"{type(error).__name__}: {error}"
        if context:
            message = f"{context}: {message}"
        report = run.report if run is not None else None
        if report is not None and report.hosts and (len(report.hosts) > 1 or report.notes or report.had_flow):
            message += "\n" + summary_table(report) + next_step(report, error)
        if not fake and not debug:
            message += "\n(run with --debug for a traceback)"
        raise Exit(console().mask(message), getattr(error, "exit_code", 1))

    def run(self, argv=None, exit=True):
        words = sys.argv if argv is None else argv.split() if isinstance(argv, str) else list(argv)
        if len(words) > 1 and words[1] == "init" and os.path.basename(words[0]) == "fake":
            # `fake init` needs no fabfile; under `fab`, a task named init still works.
            try:
                run_init(words[2:])
            except FakeError as e:
                print(e, file=sys.stderr)
                if exit:
                    sys.exit(1)
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        before_work(previous)
        try:
            super().run(argv, exit)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Late:
    """Signals after the run's work: noted, not raised (Invoke would turn one into a silent exit 1).

    Installed for the rest of the program; ``Fab.run`` puts the caller's
    handlers back at the end.
    """

    def __init__(self):
        self.signame = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, self)

    def __call__(self, signum, frame):
        self.signame = self.signame or signal.Signals(signum).name


class _Terminated(KeyboardInterrupt):
    signame = "SIGTERM"


def _sigterm(signum, frame):
    raise _Terminated()


def make_program():
    return Fab(
        name="Fake",
        version=__version__,
        executor_class=Executor,
        config_class=fabric.Config,
    )


program = make_program()


def main():
    program.run()
