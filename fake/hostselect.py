"""Which hosts a run gets: ``-H`` names and patterns, ``-R`` roles, and ``-x`` exclusions.

A ``-H`` entry holding ``*``, ``?`` or ``[`` is a shell-style pattern
(``web*``, ``db[12]``): it picks the matching hosts among those of the
selected roles (of every role in ``roledefs`` when no ``-R`` is given),
instead of naming a host. ``-x`` (Fabric 1's ``--exclude-hosts``) leaves
out the hosts its entries name or match. An entry of either that matches
nothing is an error naming it, raised before any connection: a typo must
not turn into a run on the wrong hosts.

A pattern matches a host as written (``deploy@web1:2222``) or its bare
name (``web1``). Pure functions, like :mod:`fake.roles`.
"""

from fnmatch import fnmatchcase

from . import roles as rolelib
from .exceptions import ConfigError

__all__ = ["select", "exclude_hosts", "is_pattern", "matches"]

PATTERN_CHARS = "*?["


def is_pattern(entry):
    return any(ch in entry for ch in PATTERN_CHARS)


def _bare(host):
    name = host.rsplit("@", 1)[-1]
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def matches(entry, host):
    """``entry`` (a name or a pattern) names ``host``."""
    if is_pattern(entry):
        return fnmatchcase(host, entry) or fnmatchcase(_bare(host), entry)
    return entry in (host, _bare(host))


def select(hosts, roles, roledefs, exclude=None):
    """The ordered, unique hosts of ``hosts`` (names and patterns) and ``roles``, minus ``exclude``."""
    entries = rolelib.split_names(hosts)
    patterns = [e for e in entries if is_pattern(e)]
    if not patterns:
        selected = rolelib.resolve(entries, roles, roledefs)
    else:
        names = [e for e in entries if not is_pattern(e)]
        role_names = rolelib.split_names(roles) or list(roledefs or {})
        pool = rolelib.resolve(None, role_names, roledefs)
        where = f"the hosts of role{'s' if len(role_names) != 1 else ''} {', '.join(role_names)}" \
            if role_names else "env.roledefs, which has no roles"
        for pattern in patterns:
            if not any(matches(pattern, h) for h in pool):
                raise ConfigError(f"-H: pattern {pattern!r} matches none of {where}")
        selected = rolelib.resolve(names, None, roledefs)
        selected += [h for h in pool if h not in selected and any(matches(p, h) for p in patterns)]
    return exclude_hosts(selected, exclude)


def exclude_hosts(selected, exclude):
    """``selected`` without what ``exclude`` (``-x``) names or matches; each entry must match one."""
    entries = rolelib.split_names(exclude)
    for entry in entries:
        if not any(matches(entry, h) for h in selected):
            raise ConfigError(f"-x/--exclude-hosts: {entry!r} matches none of the selected hosts")
    kept = [h for h in selected if not any(matches(e, h) for e in entries)]
    if entries and not kept:
        raise ConfigError(f"-x/--exclude-hosts {','.join(entries)} leaves no hosts to run on")
    return kept
