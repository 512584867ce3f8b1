"""Kept so tools that still call ``setup.py`` keep working; Fake's metadata is in pyproject.toml.

Name, version (read from ``fake.__version__``), dependencies, extras and the
``fab``/``fake`` console scripts are all declared there; this file adds nothing.
"""

from setuptools import setup

setup()
