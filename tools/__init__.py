"""The ``telehub`` command line for fleet engineers and operators."""
