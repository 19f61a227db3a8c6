"""Order the stages of every cell over a matrix: expand and validate a config
(`expand`), run one cell's pipeline (`pipeline.run_cell`), run a whole matrix on this
machine (`local.run_matrix`) or on a Ray cluster (`ray_executor.run_matrix_ray`, with the
`ray` extra)."""

from dfjax.runner.expand import ConfigError, apply_overrides, expand, validate
from dfjax.runner.local import RunSummary, run_matrix
from dfjax.runner.pipeline import run_cell
from dfjax.runner.ray_cluster import RayExecutorError
from dfjax.runner.ray_executor import run_matrix_ray

__all__ = ["ConfigError", "RayExecutorError", "RunSummary", "apply_overrides", "expand",
           "run_cell", "run_matrix", "run_matrix_ray", "validate"]
