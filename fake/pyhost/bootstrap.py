"""The one command that starts a host's interpreter: ``python3 -c '<bootstrap>'``.

The agent's code travels inside the argument (compressed), so nothing is
uploaded or written on the host, and the command's stdin and stdout are
the protocol's from the first byte. A Python 2 on the host stops with one
line instead of a syntax error.
"""

import base64
import functools
import zlib
from pathlib import Path

from ..shell import quote

__all__ = ["command", "agent_source", "MIN_VERSION"]

MIN_VERSION = (3, 6)

_STAGE_ONE = (
    "import sys,zlib,base64;"
    "sys.version_info<{min} and sys.exit('fake: call() needs Python {human} or newer, this is '+sys.version.split()[0]);"
    "ns={{'__name__':'fake_agent'}};"
    "exec(compile(zlib.decompress(base64.b64decode('{code}')),'<fake agent>','exec'),ns);"
    "ns['serve']()"
)


@functools.lru_cache(maxsize=1)
def agent_source():
    """wire's source, then the agent's, as one program (they share one namespace on the host)."""
    here = Path(__file__).parent
    return (here / "wire.py").read_text() + "\n" + (here / "agent.py").read_text()


def command(python):
    """The shell command that starts ``python`` (quoted) with the agent."""
    code = base64.b64encode(zlib.compress(agent_source().encode(), 9)).decode()
    stage = _STAGE_ONE.format(min=MIN_VERSION, human=".".join(map(str, MIN_VERSION)), code=code)
    return f"{quote(python)} -c {quote(stage)}"
