"""The process-wide ``env`` and task registry, and ``reset()`` for tests.

Fabfiles and libraries share these two objects; everything else receives
them explicitly.
"""

from .env import CallableEnv, Env
from .registry import Registry

__all__ = ["env", "registry", "CallableEnv", "reset"]

env = Env()
registry = Registry()


def reset():
    """Forget every task, hook and env value (between tests)."""
    env.reset()
    registry.reset()
