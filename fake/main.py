"""The ``fab`` (and ``fake``) program: Fabric's own, with roles and a runner.

Everything stock ``fab`` does keeps working; this adds ``-R/--roles``,
``-P/--parallel`` and ``--set``, hands execution to :mod:`fake.runner`, and
is the one place where a FakeError becomes a message and an exit status.
Invoke's ``--dry`` loses its ``-R`` short flag to ``--roles`` (Fabric 1's
meaning of ``-R``).
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

from . import __version__, state
from .env import CallableEnv
from . import roles as rolelib
from .exceptions import ConfigError, FakeError, Interrupted
from .output import NORMAL, QUIET, VERBOSE, Console, Transcript, console, use_console
from .init import run_init
from .registry import Call, Task, render_tree
from .report import next_step, summary_table, write_report
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
                  parallel=parallel, debug=bool(args.debug.value),
                  dry_run=bool(args["dry-run"].value or args.dry.value))
        self.fake_run = run
        setup_console(args, env, self.config, run, self.collection.loaded_from)
        with run:
            run.preflight(calls, hosts)
            run.connect_all(hosts)
            return run.run_calls(calls, hosts)


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
                     help="Run on at most this many hosts at once (default: all, up to 64)."),
            Argument(names=("set",),
                     help="Set env values, KEY=VALUE[,KEY=VALUE...]; wins over the fabfile."),
            Argument(names=("v", "verbose"), kind=bool,
                     help="Show every command and its output, prefixed [host]."),
            Argument(names=("q", "quiet"), kind=bool, help="Show only failures and the summary."),
            Argument(names=("dry-run",), kind=bool,
                     help="Change nothing: read each host's state and print what would happen."),
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
        if self.args.tree.value:
            try:
                print(render_tree(state.registry, self.args.tree.value))
            except FakeError as e:
                self._bail(e)
            return
        # Our Executor always: it is what understands roles and flows.
        executor = Executor(self.collection, self.config, self.core)
        error = None
        try:
            executor.execute(*self.tasks)
        except Exit:
            raise
        except KeyboardInterrupt as e:
            error = Interrupted(getattr(e, "signame", "SIGINT"))
            self._bail(error, run=executor.fake_run)
        except FakeError as e:
            error = e
            self._bail(e, run=executor.fake_run)
        except Exception as e:
            error = e
            self._bail(e, "unexpected error", run=executor.fake_run)
        finally:
            self._finish(executor.fake_run, error)

    def _finish(self, run, error):
        """The success summary, the JSON report and the log's last line, whatever happened."""
        out = console()
        if run is not None and error is None and run.had_flow and run.hosts:
            out.write(summary_table(run), level=QUIET)
        path = self.args.report.value
        if path and run is not None:
            try:
                write_report(path, run, error, self.argv)
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
        if run is not None and run.hosts and (len(run.hosts) > 1 or run.notes or run.had_flow):
            message += "\n" + summary_table(run) + next_step(run, error)
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


def setup_console(args, env, config, run, fabfile_dir):
    """The console for this run: level, log file, secrets to mask."""
    level = QUIET if args.quiet.value else VERBOSE if args.verbose.value else NORMAL
    transcript = None
    log_file = CallableEnv(env).get("log_file", os.path.join("log", "fake.log"))
    if log_file and not os.path.isabs(str(log_file)):
        log_file = os.path.join(fabfile_dir or ".", str(log_file))  # relative to the fabfile
    out = use_console(Console(level=level))
    for value in _secrets(env, config, run):
        out.add_secret(value)
    if log_file:
        try:
            transcript = Transcript(log_file, out.mask)
        except OSError as e:
            out.write(f"warning: cannot write the log file {log_file}: {e}", err=True)
    out.transcript = transcript
    if transcript is not None:
        transcript.write("fab " + " ".join(sys.argv[1:]))
    return out


def _secrets(env, config, run):
    """Values never to show: env.secret_keys (per host too) and passwords Fabric holds."""
    keys = env.get("secret_keys") or []
    if isinstance(keys, str):
        keys = [keys]
    values = [env.get(k) for k in keys]
    for host in run.hosts:
        scope = run.scope(host)
        values += [scope.role_values.get(k) for k in keys]
    values.append(config.get("sudo", {}).get("password"))
    connect = config.get("connect_kwargs", {})
    values += [connect.get("password"), connect.get("passphrase")]
    return [v() if callable(v) else v for v in values if v]


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
