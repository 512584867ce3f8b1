"""Ready-made task libraries: ``framework`` (stages) and ``deploy`` (fills them)."""
