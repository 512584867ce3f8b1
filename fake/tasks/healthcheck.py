"""``deploy:healthcheck``: ``env.healthcheck`` on each host once it is live.

A shell command run in ``current``, a URL (fetched on the host, see
:mod:`.httpcheck`), or a Python callable run in the host's scope. It runs
before ``finishing``, after every ``published`` hook (the restart is
there); a failure switches every host back. Going live in batches, each
batch passes it before the next one switches.
"""

from ..exceptions import HostError
from ..shell import quote
from ..state import env, registry
from ..transport.exec import run_command
from .commands import here, stage_task, timeout
from .httpcheck import url_check_shell
from .layout import current_path
from .progress import action

__all__ = []


@stage_task("deploy:healthcheck", "Run env.healthcheck on each host once live; a failure switches all back.")
def _healthcheck():
    check = env.get("healthcheck")
    if not check or action() != "deploy":
        return
    if isinstance(check, str):
        conn, host = here()
        limit = timeout("healthcheck_timeout") or timeout()
        is_url = check.startswith(("http://", "https://"))
        command = url_check_shell(check, limit or 30) if is_url else f"cd {quote(current_path())} && {check}"
        result = run_command(conn, command, host=host, hide=True, warn=True,
                             timeout=(limit or 30) + 10 if is_url else limit)
        if result.exited != 0:
            out = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
            raise HostError(host, f"health check {check!r} failed (exit {result.exited})" + (f": {out}" if out else ""))
        return
    outcome = check()
    if outcome is False:
        raise HostError(env.host_string, f"health check {getattr(check, '__name__', check)!r} returned False")


registry.before("finishing", "deploy:healthcheck")
_healthcheck.batch_gate = True
