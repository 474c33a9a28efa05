"""`inv` entry point: the tasks live in fruixops.cli (also the `fruixops` command)."""

from fruixops.cli import ns  # noqa: F401

__all__ = ["ns"]      # what invoke loads
