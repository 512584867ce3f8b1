"""The ``fab`` (and ``fake``) program: Fabric's own, with roles and a runner.

Everything stock ``fab`` does keeps working; this adds ``-R/--roles``,
``-P/--parallel`` and ``--set``, hands execution to :mod:`fake.runner`, and
is the one place where a FakeError becomes a message and an exit status.
Invoke's ``--dry`` loses its ``-R`` short flag to ``--roles`` (Fabric 1's
meaning of ``-R``).
"""

import logging
import signal
import sys
import traceback

import fabric
import fabric.main
import invoke
import paramiko
from invoke import Argument, Collection, Exit, Task as InvokeTask

from . import __version__, state
from . import roles as rolelib
from .exceptions import ConfigError, FakeError, Interrupted, StepFailed
from .registry import Call, Task
from .runner import Run

__all__ = ["Fab", "Executor", "make_program", "program", "parse_set"]


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


class Executor(fabric.Executor):
    """Hands the parsed tasks to a :class:`~fake.runner.Run`."""

    fake_run = None

    def execute(self, *tasks):
        args = self.core[0].args
        env = state.env
        env.set_overrides(parse_set(args["set"].value))
        cli_hosts, cli_roles = args.hosts.value, args.roles.value
        selected_roles = rolelib.split_names(cli_roles if cli_hosts or cli_roles else env.get("roles"))
        host_source = cli_hosts if cli_hosts or cli_roles else env.get("hosts")
        roledefs = env.get("roledefs") or {}
        hosts = rolelib.resolve(host_source, selected_roles, roledefs)
        env.update(roles=selected_roles, effective_roles=selected_roles, all_hosts=hosts)
        parallel = args.parallel.value
        if parallel is not None and parallel < 1:
            raise ConfigError(f"-P/--parallel wants a number of hosts >= 1, got {parallel}")
        calls = []
        for call in self.normalize(tasks):
            calls.extend(state.registry.expand(call.task, call.kwargs))
        if self.core.remainder:
            if not hosts:
                raise ConfigError("was given a command after --, but no hosts: give -H HOST or -R ROLE")
            command = self.core.remainder

            def remainder():
                from .operations import run

                run(command)

            calls.append(Call(Task(remainder, name="remainder")))
        run = Run(env, state.registry, self.config, hosts=hosts, roles=selected_roles,
                  parallel=parallel, debug=bool(args.debug.value))
        self.fake_run = run
        with run:
            run.preflight(calls, hosts)
            run.connect_all(hosts)
            return run.run_calls(calls, hosts)


class Fab(fabric.main.Fab):
    def core_args(self):
        args = []
        for arg in super().core_args():
            if "dry" in arg.names:
                arg = Argument(names=("dry",), kind=bool, help=arg.help)
            args.append(arg)
        return args + [
            Argument(names=("R", "roles"),
                     help="Comma-separated role(s) from env.roledefs to run against."),
            Argument(names=("P", "parallel"), kind=int,
                     help=f"Run on at most this many hosts at once (default: all, up to 64)."),
            Argument(names=("set",),
                     help="Set env values, KEY=VALUE[,KEY=VALUE...]; wins over the fabfile."),
        ]

    def print_version(self):
        print(f"Fake {__version__}")
        print(f"Fabric {fabric.__version__}")
        print(f"Paramiko {paramiko.__version__}")
        print(f"Invoke {invoke.__version__}")

    def load_collection(self):
        try:
            super().load_collection()
        except (Exit, FakeError):
            raise
        except Exception as e:
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

    def execute(self):
        # Our Executor always: it is what understands roles and flows.
        executor = Executor(self.collection, self.config, self.core)
        try:
            executor.execute(*self.tasks)
        except Exit:
            raise
        except KeyboardInterrupt as e:
            self._bail(Interrupted(getattr(e, "signame", "SIGINT")), run=executor.fake_run)
        except FakeError as e:
            self._bail(e, run=executor.fake_run)
        except Exception as e:
            self._bail(e, "unexpected error", run=executor.fake_run)

    def _bail(self, error, context=None, run=None):
        """Turn an error into one message and an exit status; traceback only with --debug."""
        debug = bool(self.args.debug.value) if getattr(self, "core", None) else False
        if debug:
            traceback.print_exception(type(error), error, error.__traceback__)
        fake = isinstance(error, FakeError)
        message = str(error) if fake else f"{type(error).__name__}: {error}"
        if context:
            message = f"{context}: {message}"
        message += _summary(run, error)
        if not fake and not debug:
            message += "\n(run with --debug for a traceback)"
        raise Exit(message, getattr(error, "exit_code", 1))

    def run(self, argv=None, exit=True):
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _sigterm)
        try:
            super().run(argv, exit)
        finally:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    signame = "SIGTERM"


def _sigterm(signum, frame):
    raise _Terminated()


def _summary(run, error):
    if run is None or not (isinstance(error, (StepFailed, Interrupted)) or run.notes):
        return ""
    if len(run.hosts) < 2 and not run.notes:
        return ""
    lines = ["", "hosts:"]
    for host in run.hosts:
        outcome = run.outcome.get(host)
        if outcome is None:
            text = "not reached"
        elif outcome == "ok":
            text = "ok"
        else:
            text = f"FAILED: {getattr(outcome, 'reason', outcome)}"
        notes = run.notes.get(host)
        if notes:
            text += "; " + "; ".join(notes)
        lines.append(f"  {host}: {text}")
    return "\n".join(lines)


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
