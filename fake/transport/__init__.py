"""Reaching a host and running one command there.

``ssh``: open a host (SSH, or the built-in ``local`` target), host keys.
``exec``: one command on one host, with host-named errors.
"""
