"""docs/internals.rst names modules and objects a contributor will look for: they must exist."""

import importlib
import re
from pathlib import Path

import pytest

INTERNALS = Path(__file__).resolve().parents[2] / "docs" / "internals.rst"
NAMES = sorted(set(re.findall(r"``(fake(?:\.\w+)+)``", INTERNALS.read_text())))


def _resolve(dotted):
    """Import the longest module prefix of ``dotted``, then walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_page_names_modules():
    assert len(NAMES) > 30, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_name_exists(name):
    _resolve(name)


def test_every_module_of_the_package_is_on_the_page():
    """A new module gets a line on the page (it says where each job lives)."""
    root = Path(importlib.import_module("fake").__file__).parent
    modules = {".".join(("fake",) + p.relative_to(root).with_suffix("").parts)
               for p in root.rglob("*.py") if p.name != "__init__.py"}
    text = INTERNALS.read_text()
    assert sorted(m for m in modules if f"``{m}``" not in text) == []
