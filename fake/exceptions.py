"""Every error Fake raises on purpose.

    FakeError                      root: main.py turns it into one line and exit 1
    ├── ConfigError                a setting or the command line is wrong
    │   ├── MissingSetting         (also an AttributeError, so getattr() defaults work)
    │   └── RoleError              unknown role, bad roledefs shape, role without hosts
    ├── TaskError                  the task graph is wrong
    │   ├── UnknownTask
    │   └── HookCycle
    ├── ControllerError            work on this machine for a deploy failed (build, archive)
    ├── HostError                  something failed on one named host
    │   ├── ConnectError           could not open or keep the SSH connection
    │   ├── HostBusy               another run holds the host (its deploy lock); waiting may help
    │   ├── HostCommandError       a command exited non-zero
    │   ├── RemoteError            a function run by call() raised on the host
    │   └── TaskFailed             a task raised something that is not a FakeError
    ├── StepFailed                 a task failed on some hosts; one line per host
    └── Interrupted                Ctrl-C or SIGTERM (exit 130 / 143)

Tasks raise; nothing below main.py calls sys.exit.
"""

__all__ = [
    "FakeError",
    "ConfigError",
    "MissingSetting",
    "RoleError",
    "TaskError",
    "UnknownTask",
    "HookCycle",
    "ControllerError",
    "HostError",
    "ConnectError",
    "HostBusy",
    "HostCommandError",
    "RemoteError",
    "TaskFailed",
    "StepFailed",
    "RolloutStopped",
    "SomeHostsFailed",
    "Interrupted",
]


class FakeError(Exception):
    """Root of Fake's errors; ``str()`` is the line the user sees."""

    exit_code = 1


class ConfigError(FakeError):
    pass


class MissingSetting(ConfigError, AttributeError):
    def __init__(self, key, host=None, hint=None):
        self.key = key
        self.host = host
        where = f"[{host}] " if host else ""
        msg = f"{where}setting env.{key} is required but not set"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class RoleError(ConfigError):
    pass


class TaskError(FakeError):
    pass


class UnknownTask(TaskError):
    pass


class HookCycle(TaskError):
    def __init__(self, names):
        self.names = list(names)
        super().__init__("hook cycle: " + " -> ".join(self.names))


class ControllerError(FakeError):
    """The controller's own part of a deploy failed: env.build_command, making the archive."""


class HostError(FakeError):
    """An error on one host; the message starts with ``[host]``."""

    def __init__(self, host, message):
        self.host = host
        self.reason = message
        super().__init__(f"[{host}] {message}" if host else message)


def on_host(host, error):
    """``error`` as a HostError of ``host``, without naming the host twice."""
    if isinstance(error, HostError) or not host:
        return error
    text = str(error)
    prefix = f"[{host}] "
    return HostError(host, text[len(prefix):] if text.startswith(prefix) else text)


class ConnectError(HostError):
    pass


class HostBusy(HostError):
    """Another run holds this host; with ``--lock-wait`` the flow tries again."""


class HostCommandError(HostError):
    def __init__(self, host, command, exited, stderr="", stdout=""):
        self.command = command
        self.exited = exited
        self.stderr = stderr
        self.stdout = stdout
        tail = _tail(stderr) or _tail(stdout)
        msg = f"{_shorten(command)} exited {exited}"
        if tail:
            msg += f": {tail}"
        super().__init__(host, msg)


class RemoteError(HostError):
    """``fn`` raised on the host during ``call(fn)``: its type and message, its traceback for --debug."""

    def __init__(self, host, function, exc_type, message, traceback=""):
        self.function = function
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        detail = f"{exc_type}: {message}" if message else exc_type
        super().__init__(host, f"call({function}) raised {detail}")


class TaskFailed(HostError):
    def __init__(self, host, task, error):
        self.task = task
        self.error = error
        detail = str(error) or type(error).__name__
        super().__init__(host, f"task {task} failed: {type(error).__name__}: {detail}")


class StepFailed(FakeError):
    """A task failed on some of the hosts it ran on.

    ``failures`` maps host to the error; ``done`` lists hosts that finished it.
    """

    def __init__(self, task, failures, done=(), skipped=()):
        self.task = task
        self.failures = dict(failures)
        self.done = list(done)
        self.skipped = list(skipped)
        n = len(self.failures)
        total = n + len(self.done)
        lines = [f"{task} failed on {n} of {total} host{'s' if total != 1 else ''}:"]
        # The same reason on many hosts is one line naming them all.
        grouped = {}
        for host, err in self.failures.items():
            if isinstance(err, HostError):
                text = err.reason
            else:
                text = str(err) or type(err).__name__
                if host is not None and text.startswith(f"[{host}] "):
                    text = text[len(host) + 3:]
            grouped.setdefault(text, []).append(host)
        for text, hosts in grouped.items():
            named = [str(h) for h in hosts if h is not None]
            lines.append(f"  [{', '.join(named)}] {text}" if named else f"  {text}")
        super().__init__("\n".join(lines))


class RolloutStopped(StepFailed):
    """A deploy going live in batches stopped: its canary failed, or more hosts than ``max_fail``."""

    def __init__(self, error, why):
        super().__init__(error.task, error.failures, error.done, error.skipped)
        self.why = why
        self.args = (f"{why}\n{self.args[0]}",)


class SomeHostsFailed(FakeError):
    """A flow went on without some hosts (within ``max_fail``): done, but not everywhere."""

    exit_code = 2

    def __init__(self, failed, total):
        self.failed = dict(failed)
        super().__init__(f"done on {total - len(self.failed)} of {total} hosts; "
                         f"failed within max_fail: {', '.join(self.failed)}")


class Interrupted(FakeError):
    def __init__(self, signame="SIGINT"):
        self.signame = signame
        self.exit_code = 143 if signame == "SIGTERM" else 130
        super().__init__(f"interrupted by {signame}")


def _tail(text, lines=3, width=300):
    """Last few non-empty lines of output, joined: enough to name the cause."""
    if not text:
        return ""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out = " | ".join(kept[-lines:])
    return out if len(out) <= width else "..." + out[-width:]


def _shorten(command, width=120):
    one = " ".join(str(command).split())
    return one if len(one) <= width else one[: width - 3] + "..."
