"""From ``-H``/``-R`` and ``env.roledefs`` to the ordered list of hosts.

Pure functions of their arguments: the runner and the unit tests call them
the same way. ``env.roledefs`` takes either shape Fabric 1 took::

    {'web': ['h1', 'h2']}
    {'staging': {'hosts': ['h1'], 'branch': 'staging'}}

and ``hosts`` may be a callable returning the list.
"""

from .exceptions import RoleError

__all__ = ["split_names", "role_hosts", "resolve", "host_roles", "role_values"]

SHAPE = "a list of hosts or a dict with a 'hosts' list"


def split_names(value):
    """``'web,db'`` or ``['web', 'db']`` -> ``['web', 'db']``, blanks dropped."""
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v and v.strip()]


def _check_roledefs(roledefs):
    if roledefs is None:
        return {}
    if not isinstance(roledefs, dict):
        raise RoleError(
            f"env.roledefs must be a dict of role name to {SHAPE}; got {type(roledefs).__name__}"
        )
    return roledefs


def _spec(roledefs, name):
    spec = roledefs[name]
    if isinstance(spec, dict):
        return spec.get("hosts"), {k: v for k, v in spec.items() if k != "hosts"}
    return spec, {}


def role_hosts(roledefs, name):
    """The hosts of one role, in order; errors name the role at fault."""
    roledefs = _check_roledefs(roledefs)
    if name not in roledefs:
        known = ", ".join(sorted(roledefs)) or "none (env.roledefs is empty)"
        raise RoleError(f"unknown role {name!r}; known roles: {known}")
    hosts, _ = _spec(roledefs, name)
    if callable(hosts):
        hosts = hosts()
    if hosts is None:
        if not isinstance(roledefs[name], (dict, list, tuple)):
            raise RoleError(
                f"env.roledefs[{name!r}] must be {SHAPE}; got {type(roledefs[name]).__name__}"
            )
        raise RoleError(f"role {name!r} has no hosts (env.roledefs[{name!r}] has no 'hosts' key)")
    if not isinstance(hosts, (list, tuple)):
        raise RoleError(f"env.roledefs[{name!r}] must be {SHAPE}; got {type(hosts).__name__}")
    for host in hosts:
        # split(): one word, no blank inside (cheaper than a test per character at 500 hosts)
        if not isinstance(host, str) or len(host.split()) != 1:
            raise RoleError(f"role {name!r} has a bad host entry {host!r}: want 'name', 'user@name' or 'name:port'")
    if not hosts:
        raise RoleError(f"role {name!r} has no hosts")
    return [h.strip() for h in hosts]


def resolve(hosts, roles, roledefs):
    """``-H`` hosts then each role's hosts in ``-R`` order, without duplicates."""
    out = []
    for host in split_names(hosts):
        if host not in out:
            out.append(host)
    for name in split_names(roles):
        for host in role_hosts(roledefs, name):
            if host not in out:
                out.append(host)
    return out


def host_roles(roledefs, host):
    """Every role in roledefs whose hosts include ``host`` (selected or not).

    A malformed role that was not selected is skipped here: it is reported
    when someone selects it, not on every task of every host.
    """
    roledefs = _check_roledefs(roledefs)
    found = []
    for name in roledefs:
        try:
            if host in role_hosts(roledefs, name):
                found.append(name)
        except RoleError:
            continue
    return found


def role_values(roledefs, host, selected):
    """The non-``hosts`` keys of the selected roles ``host`` is in, merged in order."""
    roledefs = _check_roledefs(roledefs)
    merged = {}
    for name in selected:
        if host in role_hosts(roledefs, name):
            merged.update(_spec(roledefs, name)[1])
    return merged
