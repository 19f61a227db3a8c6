"""Named matrices: `get_config(name)` imports `dfjax.configs.<name>` and calls get_config()."""

from __future__ import annotations

import importlib
import pkgutil

from dfjax.config import MatrixConfig


def names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def get_config(name: str) -> MatrixConfig:
    if name not in names():
        raise ValueError(f"unknown config {name!r}; known configs: {', '.join(names())}")
    return importlib.import_module(f"dfjax.configs.{name}").get_config()
