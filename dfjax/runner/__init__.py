"""Order the stages of every cell over a matrix: expand and validate a config
(`expand`), run one cell's pipeline (`pipeline.run_cell`), run a whole matrix on this
machine (`local.run_matrix`)."""

from dfjax.runner.expand import ConfigError, apply_overrides, expand, validate
from dfjax.runner.local import RunSummary, run_matrix
from dfjax.runner.pipeline import run_cell

__all__ = ["ConfigError", "RunSummary", "apply_overrides", "expand", "run_cell", "run_matrix",
           "validate"]
