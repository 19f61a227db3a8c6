"""Named matrices, and config files: `get_config(name)` imports `dfjax.configs.<name>`, or
the Python file `name` (ending in .py), and calls its get_config() (as big_vision does)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

from dfjax.config import MatrixConfig


def names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if not m.name.startswith("_")))


def get_config(name: str) -> MatrixConfig:
    """The MatrixConfig of a named matrix (`dfjax list` shows them) or of a config file
    `path/to/file.py` defining get_config() -> MatrixConfig."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"dfjax_user_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "get_config", None)):
            raise ValueError(f"config file {path} defines no get_config()")
        config = module.get_config()
        if not isinstance(config, MatrixConfig):
            raise ValueError(f"config file {path}: get_config() returned "
                             f"{type(config).__name__}, not a MatrixConfig")
        return config
    if name not in names():
        raise ValueError(f"unknown config {name!r}; known configs: {', '.join(names())} "
                         "(or a path/to/config.py)")
    return importlib.import_module(f"dfjax.configs.{name}").get_config()
