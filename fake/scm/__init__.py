"""Ways of getting code into a release; ``env.scm`` picks one."""

from .git import Git

STRATEGIES = {"git": Git}


def strategy(name_or_object):
    """The strategy object for ``env.scm`` (a name, or an object used as is)."""
    from ..exceptions import ConfigError

    if not isinstance(name_or_object, str):
        return name_or_object
    try:
        return STRATEGIES[name_or_object]()
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ConfigError(f"env.scm = {name_or_object!r} is not a known strategy; known: {known}") from None
