"""Sphinx configuration for Fake's documentation.

Builds offline with Sphinx alone: no extensions, the built-in theme. The
version is read from fake/__init__.py as text, so building the docs does
not need Fake or Fabric installed.
"""

import re
from pathlib import Path

_init = Path(__file__).resolve().parent.parent / "fake" / "__init__.py"

project = "Fake"
author = "the Fake authors"
copyright = "the Fake authors"
release = re.search(r'__version__ = "([^"]+)"', _init.read_text()).group(1)
version = release

extensions = []
root_doc = "index"
exclude_patterns = ["_build"]
highlight_language = "python3"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"Fake {release}"
html_show_sourcelink = False
