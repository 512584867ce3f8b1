"""Python on the hosts: ``call(fn)`` runs a function there and brings its value back.

``wire`` (the format, both ends), ``bootstrap`` (the one command that
starts the host's interpreter), ``agent`` (the host's side), ``ship`` (how a
function is named to the host), ``modules`` (what the controller serves),
``pipes`` and ``interpreter`` (the controller's side), ``call`` (the API).
"""

from .call import call

__all__ = ["call"]
