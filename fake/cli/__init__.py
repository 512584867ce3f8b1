"""The ``fab``/``fake`` program: Fabric's, extended (see :mod:`fake.cli.program`)."""

from .executor import Executor, parse_set
from .program import Fab, main, make_program, program

__all__ = ["Fab", "Executor", "main", "make_program", "program", "parse_set"]
