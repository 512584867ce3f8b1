"""Ways of getting code into a release; ``env.scm`` picks one.

The interface is :class:`fake.scm.base.Strategy`; ``env.scm`` may also be
an object implementing it (or a class, called to make one).
"""

from .base import Resolved, Strategy, Target
from .copy import Copy
from .git import Git

__all__ = ["strategy", "Strategy", "Resolved", "Target", "Git", "Copy", "STRATEGIES"]

STRATEGIES = {"git": Git, "copy": Copy}  # git first: the default, and listed first in errors


def strategy(name_or_object):
    """The strategy object for ``env.scm`` (a name, or an object used as is)."""
    from ..exceptions import ConfigError

    if not isinstance(name_or_object, str):
        return name_or_object
    try:
        return STRATEGIES[name_or_object]()
    except KeyError:
        known = ", ".join(STRATEGIES)
        raise ConfigError(f"env.scm = {name_or_object!r} is not a known strategy; known: {known}") from None
