"""Where the ``fab`` and ``fake`` console scripts start (the program is :mod:`fake.cli`)."""

from .cli import Executor, Fab, main, make_program, parse_set, program

__all__ = ["Fab", "Executor", "main", "make_program", "program", "parse_set"]
