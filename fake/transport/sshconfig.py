"""ssh_config lookups that stay cheap with a ``Host`` block per server.

Paramiko's lookup walks every block and, for each one that does not match,
calls ``getpass.getuser()`` for ``Match`` (a passwd lookup when USER is
unset); Fabric and Fake look a host up several times while connecting. With
a block per server that is quadratic in the fleet: at 200 hosts it was most
of the controller's CPU. Here each host is looked up once per run, among
its own blocks and the pattern blocks only, with the same result.
"""

import threading

import paramiko

__all__ = ["cache_ssh_config"]


class _Blocks(paramiko.SSHConfig):
    """Some blocks of an ssh_config, looked up as Paramiko does, without its getuser() per block."""

    def __init__(self, blocks):
        super().__init__()
        self._config = blocks

    def _does_match(self, match_list, *args, **kwargs):
        # A Host block has no Match rules: skip the getuser() Paramiko makes first.
        return super()._does_match(match_list, *args, **kwargs) if match_list else []


class _CachedSSHConfig(paramiko.SSHConfig):
    """Paramiko's SSHConfig, each host looked up once, among the blocks that can apply to it."""

    def __init__(self, base):
        self.__dict__.update(base.__dict__)
        self._fake_cache = {}
        self._fake_lock = threading.Lock()
        # Blocks whose Host names are all plain (no pattern, no negation, no
        # Match) can only apply to those names: index them by name, so a
        # lookup walks its own blocks and the general ones, not all of them.
        self._fake_named, self._fake_general = {}, []
        for i, context in enumerate(self._config):
            names = context.get("host") or []
            if names and not context.get("matches") and not any(set(n) & set("*?[]!") for n in names):
                for name in names:
                    self._fake_named.setdefault(name, []).append((i, context))
            else:
                self._fake_general.append((i, context))
        # CanonicalizeHostname makes Paramiko look a new name up: then walk every block.
        self._fake_narrow = bool(self._fake_named) and not any(
            "canonicalizehostname" in c.get("config", {}) for c in self._config)

    def _blocks(self, hostname):
        """The blocks that may apply to ``hostname``, in file order."""
        return [c for _, c in sorted(self._fake_named.get(hostname, []) + self._fake_general, key=lambda ic: ic[0])]

    def lookup(self, hostname):
        with self._fake_lock:
            found = self._fake_cache.get(hostname)
        if found is None:
            found = _Blocks(self._blocks(hostname) if self._fake_narrow else self._config).lookup(hostname)
            with self._fake_lock:
                self._fake_cache[hostname] = found
        # A copy: callers may add to it (Fabric extends identityfile lists).
        return paramiko.SSHConfigDict({k: list(v) if isinstance(v, list) else v for k, v in found.items()})


def cache_ssh_config(config):
    """Make ``config``'s ssh_config look each host up once (for the rest of the run)."""
    base = getattr(config, "base_ssh_config", None)
    if isinstance(base, paramiko.SSHConfig) and not isinstance(base, _CachedSSHConfig):
        config.base_ssh_config = _CachedSSHConfig(base)


