"""One small registry per matrix axis: the key is exactly the name in the results table.

Every entry, on every axis, follows one protocol (`Entry`): it declares its options with
their defaults and checks their values, so `Registry.resolve(name, options)` turns a
spec's options into the full set the entry runs with -- or raises `OptionError` naming
the valid options -- before any data loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar


class UnknownNameError(KeyError):
    """Raised for a name no registry entry has; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


class OptionError(ValueError):
    """An option an entry does not have, or a value it refuses; the message names the
    entry and lists its options."""


def _show(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "none"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Entry:
    """What every registry entry declares.

    options: every option the entry takes, with its default (the value used when a spec
    does not set it). check: options -> None, raises ValueError on a bad value (called
    with the resolved options, defaults filled in). option_prefixes: options named
    `<prefix><anything>` are accepted too (e.g. `source.` for a derived dataset that
    passes them on). description: one line for `dfjax list`.
    """

    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None
    option_prefixes: tuple[str, ...] = ()
    description: str = ""

    def resolve_options(self, given: Mapping[str, Any] | tuple = ()) -> dict[str, Any]:
        """The declared defaults overridden by `given`; unknown names and refused values
        raise ValueError listing the valid options."""
        given = dict(given)
        unknown = sorted(k for k in given if k not in self.options
                         and not k.startswith(self.option_prefixes or ("\0",)))
        if unknown:
            prefixes = "".join(f", {p}*" for p in self.option_prefixes)
            raise ValueError(f"has no option(s) {unknown}; its options: "
                             f"{_show(self.options)}{prefixes}")
        options = {**self.options, **given}
        if self.check is not None:
            self.check(options)
        return options


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """A name -> Entry mapping that refuses duplicates and explains unknown names.

    Example:
        >>> MODELS = Registry("model")
        >>> _ = MODELS.register("cnn7", Entry(options={"dropout": 0.5}))
        >>> MODELS.names()
        ('cnn7',)
        >>> MODELS.resolve("cnn7", {})
        {'dropout': 0.5}
    """

    def __init__(self, axis: str):
        self.axis = axis
        self._entries: dict[str, E] = {}

    def register(self, name: str, entry: E) -> E:
        if name in self._entries:
            raise ValueError(f"{self.axis} {name!r} is already registered")
        if not isinstance(entry, Entry):
            raise TypeError(f"{self.axis} {name!r}: a registry entry must be a "
                            f"dfjax.registry.Entry, got {type(entry).__name__}")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.axis} {name!r}; known {self.axis}s: {', '.join(self.names())}"
            ) from None

    def resolve(self, name: str, given: Mapping[str, Any] | tuple = ()) -> dict[str, Any]:
        """Entry `name`'s options with `given` applied: OptionError (naming the entry and
        its valid options) for an unknown option or a refused value."""
        try:
            return self.get(name).resolve_options(given)
        except (ValueError, TypeError) as e:
            raise OptionError(f"{self.axis} {name!r} {e}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def items(self) -> list[tuple[str, E]]:
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
