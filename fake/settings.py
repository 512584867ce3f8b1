"""Typed readers of env values: one rule per kind of setting, one error text per rule.

A setting may come from a fabfile (``2``, ``True``), from ``--set`` (always
text: ``"2"``, ``"false"``, ``""``) or from a callable evaluated for the
current host. The readers here read a key for the current host and convert
it; the ``as_*`` converters do the converting alone, for callers that already
hold the value. Errors are ConfigError ``env.KEY must be ..., got VALUE``;
a required setting that is missing is MissingSetting naming key and host.

The readers take the env as their first argument instead of importing
:mod:`fake.state`: this module sits below ``env.py`` and ``state.py`` (it
imports only :mod:`fake.exceptions`), and a lazy import would only hide an
upward dependency. Passing it also lets the engine read its own run's env.
Callables are evaluated here as CallableEnv does, so an Env or a CallableEnv
may be passed.

Shared rules: ``None`` is "not set" (the caller's default applies); so is
``""`` for numbers and text, since ``--set key=`` is how a command line
empties a setting; ``False`` is "off" for numbers (``git_shallow_clone``).
"""

import math

from .exceptions import ConfigError, MissingSetting

__all__ = ["read", "text", "number", "flag", "required", "share", "as_text", "as_number", "as_flag", "as_share"]

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


# -- readers: the current host's value of a key -------------------------------------
def read(env, key, default=None):
    """The value as set (callables evaluated), or ``default`` when it is None or absent."""
    value = env.get(key)
    if callable(value):
        value = value()
    return default if value is None else value


def text(env, key, default=None):
    """A text setting; ``default`` when unset or empty."""
    value = as_text(key, read(env, key))
    return default if value is None else value


def number(env, key, *, minimum=0, whole=False, default=None):
    """A number of at least ``minimum`` (an int when ``whole``); ``default`` when unset."""
    value = as_number(key, read(env, key), minimum=minimum, whole=whole)
    return default if value is None else value


def flag(env, key, default=False):
    """A yes/no setting; ``default`` when unset (``None`` keeps a three-way choice)."""
    value = as_flag(key, read(env, key))
    return default if value is None else value


def share(env, key, total, *, at_least=0, default=None):
    """A count of hosts, ``N`` or ``"N%"`` of ``total``; ``default`` when unset."""
    value = as_share(key, read(env, key), total, at_least=at_least)
    return default if value is None else value


def required(env, key, hint=None):
    """The value, or MissingSetting naming the key and the host when it is unset or empty."""
    value = read(env, key)
    if value is None or value == "":
        raise MissingSetting(key, env.get("host_string"), hint)
    return value


# -- converters: a value already read ----------------------------------------------
def as_text(key, value):
    """``value`` as text: None for unset or empty; numbers become their digits."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"env.{key} must be text, got {value!r}")


def as_number(key, value, *, minimum=0, whole=False):
    """``value`` as a number (``--set`` gives text): None when unset, else one clear error.

    A whole number is an int; otherwise a value with no fraction is an int
    too (``30``, not ``30.0``, in messages and commands).
    """
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return None
    wanted = f"a whole number >= {minimum}" if whole else "a number"
    result = _parse_number(value)
    if result is None or (whole and result != int(result)):
        raise ConfigError(f"env.{key} must be {wanted}, got {value!r}")
    if result < minimum:
        shown = wanted if whole else f"at least {minimum}"
        raise ConfigError(f"env.{key} must be {shown}, got {value!r}")
    return int(result) if result == int(result) else result


def as_share(key, value, total, *, at_least=0):
    """``value`` as a count of hosts: a whole number, or ``"25%"`` of ``total`` rounded down.

    The result is never below ``at_least`` (a batch has at least one host).
    """
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = _parse_number(value.strip()[:-1])
        if percent is None or not 0 <= percent <= 100:
            raise ConfigError(f"env.{key} must be a whole number or a percentage like '25%', got {value!r}")
        return max(at_least, math.floor(total * percent / 100 + 1e-9))
    try:
        count = as_number(key, value, whole=True)
    except ConfigError:
        raise ConfigError(f"env.{key} must be a whole number or a percentage like '25%', got {value!r}") from None
    return None if count is None else max(at_least, count)


def _parse_number(value):
    """An int or a finite float, or None; True is not 1 here (a yes is not a count)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        result = int(value) if isinstance(value, str) and value.strip().lstrip("+-").isdigit() else float(value)
    except (TypeError, ValueError):
        return None
    return result if isinstance(result, int) or math.isfinite(result) else None


def as_flag(key, value):
    """``value`` as True or False (``--set forward_agent=false`` must mean False); None stays None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (str, int)):
        word = str(value).strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
    raise ConfigError(f"env.{key} must be true or false, got {value!r}")
