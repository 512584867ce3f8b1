"""Deploy preflight checks written as Python functions, run on each host by ``call()``.

Opt-in: ``from fake.tasks.checks import *`` in a fabfile hooks
``checks:preflight`` before ``starting`` (before the deploy lock is taken,
so nothing on a host has changed when a check fails); each check runs only
when its setting is set:

=========================  =====================================================
``check_disk_free``        free space needed under ``deploy_path`` (``500M``, ``2G``, bytes)
``check_python``           the host's ``python`` at least this version (``"3.8"``)
``check_ports_free``       TCP ports nothing may listen on (``[8000]``)
``check_ports_listening``  TCP ports something must listen on (``[5432]``)
=========================  =====================================================

All facts come back from one call per host (:func:`fake.tasks.hostfacts.facts`);
the comparison is made here, and a failed check names the host, the
setting and what was found. ``fab -R ROLE checks`` runs them on their own.
"""

import re

from ..exceptions import ConfigError, HostError
from ..operations import here
from ..pyhost import call
from ..settings import read
from ..state import env, registry
from .commands import stage_task
from .hostfacts import facts

__all__ = ["checks", "preflight"]  # what a star-import brings into a fabfile

SETTINGS = ("check_disk_free", "check_python", "check_ports_free", "check_ports_listening")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value, key="check_disk_free"):
    """``500M`` / ``2G`` / ``1048576`` -> bytes; ConfigError naming the setting otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ConfigError(f"env.{key} wants a size such as 500M or 2G, got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_version(value, key="check_python"):
    """``"3.8"`` / ``(3, 8)`` -> ``(3, 8)``."""
    parts = value if isinstance(value, (tuple, list)) else str(value).strip().split(".")
    try:
        version = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        version = ()
    if not version:
        raise ConfigError(f"env.{key} wants a version such as 3.8, got {value!r}")
    return version


def parse_ports(value, key):
    """``8000`` / ``"8000,8001"`` / ``[8000]`` -> ``[8000, ...]``."""
    items = value if isinstance(value, (list, tuple, set)) else str(value).split(",")
    ports = []
    for item in items:
        try:
            port = int(str(item).strip())
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ConfigError(f"env.{key} wants TCP port numbers, got {item!r}")
        ports.append(port)
    return ports


def wanted():
    """The checks the settings ask for, parsed: ``{setting: value}`` (empty: nothing to check)."""
    parse = {"check_disk_free": parse_size, "check_python": parse_version,
             "check_ports_free": parse_ports, "check_ports_listening": parse_ports}
    out = {}
    for key in SETTINGS:
        value = read(env, key)
        if value not in (None, "", [], ()):
            out[key] = parse[key](value, key)
    return out


def judge(want, found, path=None):
    """The failed checks, one text each, from what a host reported (pure, for tests)."""
    problems = []
    if "check_python" in want and tuple(found["python"][:len(want["check_python"])]) < want["check_python"]:
        problems.append(f"check_python: Python {'.'.join(map(str, found['python']))} is older than "
                        f"{'.'.join(map(str, want['check_python']))}")
    if "check_disk_free" in want and found["free_bytes"] < want["check_disk_free"]:
        problems.append(f"check_disk_free: {_size(found['free_bytes'])} free under {path}, "
                        f"{_size(want['check_disk_free'])} needed")
    for port in want.get("check_ports_free", []):
        if found["ports"].get(port) != "free":
            problems.append(f"check_ports_free: something listens on port {port}")
    for port in want.get("check_ports_listening", []):
        if found["ports"].get(port) != "listening":
            problems.append(f"check_ports_listening: nothing listens on port {port}")
    return problems


def _size(n):
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f}{unit}"
    return f"{n}B"


def run_checks(report=False):
    want = wanted()
    if not want:
        return None
    _, host = here("the preflight checks")
    path = read(env, "deploy_path") if "check_disk_free" in want else None
    if "check_disk_free" in want and not path:
        raise ConfigError("env.check_disk_free needs env.deploy_path (the space is checked there)")
    ports = want.get("check_ports_free", []) + want.get("check_ports_listening", [])
    found = call(facts, path, ports)
    if report:
        print(f"python {'.'.join(map(str, found['python']))}"
              + (f", {_size(found['free_bytes'])} free under {path}" if path else "")
              + "".join(f", port {p} {state}" for p, state in sorted(found["ports"].items())))
    problems = judge(want, found, path)
    if problems:
        raise HostError(host, "preflight check failed: " + "; ".join(problems))
    return found


@stage_task("checks:preflight", "Run the checks the check_* settings ask for on each host (one call each).",
            readonly=True)
def preflight():
    return run_checks()


@registry.task(readonly=True)
def checks():
    """Run the preflight checks on their own and show what each host has."""
    return run_checks(report=True)


registry.before("starting", "checks:preflight")
