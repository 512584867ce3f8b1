"""``call(fn, *args, **kwargs)``: run a Python function on the current host and get its value.

Shell one-liners are where deploy checks go wrong (quoting, parsing
``df``'s columns); a function is easier to write, test and reuse. The
host needs only Python 3 (``env.python``, default ``python3``): nothing is
installed or written there.
"""

import sys

from ..engine.run import current_run
from ..operations import here, timeout
from ..settings import text
from ..state import env
from .interpreter import interpreter_for
from .ship import describe, function_name

__all__ = ["call", "START_TIMEOUT"]

START_TIMEOUT = 30  # seconds for a host's Python to start and say hello


def call(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` on the current host with its Python 3; return the value.

    Arguments and the value are the wire format's types (None, bool, int,
    float, str, bytes, list, tuple, dict, set, datetime). An exception in
    ``fn`` is a RemoteError naming the host, the function and the remote
    exception; what ``fn`` prints appears prefixed with the host.
    """
    name = function_name(fn)
    conn, host = here(f"call({name})")
    spec = describe(fn)
    python = text(env, "python", default="python3")
    fabfile = getattr(sys.modules.get("fabfile"), "__file__", None)
    interp = interpreter_for(conn, host, python, START_TIMEOUT, fabfile)
    return interp.call(spec, args, kwargs, name, timeout=timeout(), debug=_debug())


def _debug():
    run = current_run()
    return bool(run is not None and run.debug)
