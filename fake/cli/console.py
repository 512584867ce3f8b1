"""The console of one ``fab`` run: output level, the log file, and the secrets it never shows."""

import os
import sys

from ..env import CallableEnv
from ..output import NORMAL, QUIET, VERBOSE, Console, Transcript, use_console
from ..progress import COMPACT_ABOVE
from ..settings import number

__all__ = ["setup_console"]


def setup_console(args, env, config, run, fabfile_dir):
    """The console for this run: level, log file, secrets to mask."""
    level = QUIET if args.quiet.value else VERBOSE if args.verbose.value else NORMAL
    transcript = None
    log_file = CallableEnv(env).get("log_file", os.path.join("log", "fake.log"))
    if log_file and not os.path.isabs(str(log_file)):
        log_file = os.path.join(fabfile_dir or ".", str(log_file))  # relative to the fabfile
    out = use_console(Console(level=level))
    above = number(CallableEnv(env), "compact_above", minimum=0, whole=True, default=COMPACT_ABOVE)
    if level == NORMAL and len(run.hosts) > above:
        out.compact = len(run.hosts)  # a progress line per stage; host lines under -v and in the log
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
        values += [run.scopes.get(host).role_values.get(k) for k in keys]
    values.append(config.get("sudo", {}).get("password"))
    connect = config.get("connect_kwargs", {})
    values += [connect.get("password"), connect.get("passphrase")]
    return [v() if callable(v) else v for v in values if v]
