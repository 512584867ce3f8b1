"""Shared fixtures for the unit tests.

``fake.state`` holds one process-wide ``env`` and task registry. Every test
starts and ends with both empty (``fake.state.reset()``).

``fake.tasks.framework`` and ``fake.tasks.deploy`` register their stages,
hooks, preflight checks and env defaults once, at import time, into that
global state; the reset wipes them. So they are imported here, before any
test runs, and what they registered is snapshotted: the ``library_registry``
fixture hands a test a fresh ``Registry`` holding a copy of it, and
``library_defaults`` puts their env defaults back for one test.
"""

import pytest

import fake.state
import fake.tasks.deploy  # noqa: F401  (registers the deploy flow at import)
from fake.registry import Registry


def _snapshot(registry):
    return {
        "tasks": dict(registry.tasks),
        "before": {k: list(v) for k, v in registry._before.items()},
        "after": {k: list(v) for k, v in registry._after.items()},
        "preflight": {k: list(v) for k, v in registry._preflight.items()},
    }


_LIBRARY = _snapshot(fake.state.registry)
_LIBRARY_DEFAULTS = dict(fake.state.env._defaults)


@pytest.fixture(autouse=True)
def clean_state():
    fake.state.reset()
    yield
    fake.state.reset()


@pytest.fixture
def library_registry():
    """A fresh Registry with what fake.tasks.framework/deploy registered."""
    reg = Registry()
    reg.tasks.update(_LIBRARY["tasks"])
    for table, key in ((reg._before, "before"), (reg._after, "after"), (reg._preflight, "preflight")):
        for name, refs in _LIBRARY[key].items():
            table[name] = list(refs)
    return reg


@pytest.fixture
def library_defaults():
    """The env defaults fake.tasks.deploy set (reset() removed them)."""
    fake.state.env.setdefaults(**_LIBRARY_DEFAULTS)
    return dict(_LIBRARY_DEFAULTS)


@pytest.fixture
def screen():
    """A plain Console writing to StringIO buffers, installed for the test: ``(out, err)``."""
    import io

    from fake.output import Console, console, use_console

    out, err = io.StringIO(), io.StringIO()
    previous = console()
    use_console(Console(out=out, err=err, color=False))
    yield out, err
    use_console(previous)
