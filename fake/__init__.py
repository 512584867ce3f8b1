"""Fake: Capistrano-style deploys on top of Fabric 3."""

__version__ = "1.0.0.dev0"
