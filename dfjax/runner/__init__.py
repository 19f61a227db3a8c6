"""Expand a MatrixConfig into cells and execute them."""

from dfjax.runner.expand import ConfigError, apply_overrides, expand, validate
from dfjax.runner.local import RunSummary, run_matrix

__all__ = ["ConfigError", "RunSummary", "apply_overrides", "expand", "run_matrix", "validate"]
