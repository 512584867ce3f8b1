"""Where the ``fab`` and ``fake`` console scripts start (the program is :mod:`fake.cli`).

Importing Fabric, Invoke and Paramiko takes a moment; a Ctrl-C during it
ends the program quietly (130) instead of with an import traceback, so the
program is imported only once that is in place.
"""

__all__ = ["Fab", "Executor", "main", "make_program", "program", "parse_set"]


def main():
    from .signals import before_work

    before_work()
    from .cli import program
    from .streams import whole_lines

    with whole_lines():  # hosts' tasks print from threads: never two in one line
        program.run()


def __getattr__(name):
    if name in __all__:
        from . import cli

        return getattr(cli, name)
    raise AttributeError(f"module 'fake.main' has no attribute {name!r}")
