"""Training: recipes by name, the optax loop, and the content-hash checkpoint cache."""

from dfjax.training.base import Recipe, RecipeEntry
from dfjax.training.checkpoints import (
    CorruptCheckpointError,
    default_checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
)
from dfjax.training.loop import create_variables, evaluate, train_detector
from dfjax.training.recipes import RECIPES, build_recipe

__all__ = [
    "RECIPES", "Recipe", "RecipeEntry", "build_recipe", "train_detector", "create_variables",
    "evaluate", "save_checkpoint", "load_checkpoint", "CorruptCheckpointError",
    "default_checkpoint_dir",
]
