"""Everything a fabfile needs: ``from fake.api import env, task, run, ...``."""

from contextlib import contextmanager

from .env import CallableEnv
from .env import settings as _settings
from .exceptions import (
    ConfigError,
    FakeError,
    HostCommandError,
    HostError,
    MissingSetting,
    RemoteError,
    StepFailed,
)
from .operations import cd, get, local, put, run, sudo, test
from .registry import primary, roles, runs_once
from .engine import execute
from .pyhost import call
from .state import env, registry

__all__ = [
    "env",
    "task",
    "flow",
    "before",
    "after",
    "execute",
    "roles",
    "runs_once",
    "primary",
    "run",
    "sudo",
    "local",
    "put",
    "get",
    "cd",
    "test",
    "call",
    "settings",
    "CallableEnv",
    "FakeError",
    "ConfigError",
    "MissingSetting",
    "HostError",
    "HostCommandError",
    "RemoteError",
    "StepFailed",
]

task = registry.task
flow = registry.flow
before = registry.before
after = registry.after


@contextmanager
def settings(**values):
    """Set ``env`` values for a block (the current host's, inside a task)."""
    with _settings(env, **values):
        yield
