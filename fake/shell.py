"""Shell text for remote hosts: quoting, batched scripts, and fork-free idioms.

Every value that reaches a remote shell goes through :func:`quote` or
:func:`join` (``shlex``). Multi-step work is one :class:`Script`, so a stage
costs one round trip per host and a failing step is still named.

Each program a step starts costs a fork and an exec on the host, about a
millisecond of CPU; on a host running twenty deploys' worth of work at once
that is what stretches a stage. So the helpers here test with shell
builtins first and start a program only when there is work for it.
"""

import shlex

__all__ = ["quote", "join", "quote_path", "Script", "remove_if_present", "mkdir_if_missing",
           "block", "BLOCK", "END_BLOCK", "unblock"]

# Framing for output that may hold any line (git's refs, its errors, a log):
# the controller prefixes the lines itself instead of running sed on the host.
BLOCK = "fake-block "
END_BLOCK = "fake-end-block"


def quote(value):
    return shlex.quote(str(value))


def join(argv):
    return " ".join(quote(a) for a in argv)


def quote_path(path):
    """Quote a path but keep a leading ``~`` meaning the remote home."""
    path = str(path)
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + quote(path[2:])
    return quote(path)


class Script:
    """Steps sent as one shell program; the failing step is reported by name.

    Each step is shell text built from quoted pieces. With ``set -e`` the
    first failing step stops the script, and an EXIT trap prints its label
    on stderr so the error can say which step failed. A step is one simple
    command, or one command under an ``if`` whose condition only tests
    (``set -e`` still stops on it): ``set -e`` ignores failures inside
    ``a && b``, and a pipeline reports only its last command.
    """

    MARK = "fake-failed-step: "

    def __init__(self):
        self.steps = []
        # A local file streamed to the script's standard input: an upload
        # that rides on the command itself, with no round trip of its own.
        self.stdin = None

    def add(self, label, shell):
        self.steps.append((label, shell))
        return self

    def argv(self, label, *argv):
        return self.add(label, join(argv))

    def render(self):
        lines = [
            "set -e",
            "fake_step=start",
            f"trap '[ $? -eq 0 ] || echo \"{self.MARK}$fake_step\" >&2' EXIT",
        ]
        for label, shell in self.steps:
            lines.append(f"fake_step={quote(label)}")
            lines.append(shell)
        return "\n".join(lines) + "\n"

    def __bool__(self):
        return bool(self.steps)

    @classmethod
    def failed_step(cls, stderr):
        """Split our marker line off stderr: (label or None, rest)."""
        label, kept = None, []
        for line in (stderr or "").splitlines():
            if line.startswith(cls.MARK):
                label = line[len(cls.MARK):].strip()
            else:
                kept.append(line)
        return label, "\n".join(kept)


def remove_if_present(path, recursive=False):
    """Shell: remove ``path`` (a file, a dangling symlink, or a tree) only if something is there."""
    p = quote(path)
    return f"if [ -e {p} ] || [ -L {p} ]; then {join(['rm', '-rf' if recursive else '-f', '--', path])}; fi"


def mkdir_if_missing(*paths):
    """Shell: ``mkdir -p`` the paths, run only when one of them is not a directory yet."""
    if not paths:
        return ":"
    missing = " || ".join(f"[ ! -d {quote(p)} ]" for p in paths)
    return f"if {missing}; then {join(['mkdir', '-p', '--', *paths])}; fi"


def block(kind, variable):
    """Shell printing the lines of ``$variable`` framed as a block of ``kind`` (see :func:`unblock`)."""
    return f"echo {quote(BLOCK + kind)}; printf '%s\\n' \"${variable}\"; echo {END_BLOCK}"


def unblock(lines):
    """Lines with each framed block's lines turned into ``<kind> <line>``."""
    out, kind = [], None
    for line in lines:
        if kind is None and line.startswith(BLOCK):
            kind = line[len(BLOCK):].strip()
        elif kind is not None and line == END_BLOCK:
            kind = None
        elif kind is not None:
            if line:
                out.append(f"{kind} {line}")
        else:
            out.append(line)
    return out
