"""Explicit keys: one root key per run, one key per cell derived from its stable id."""

from __future__ import annotations

import hashlib

import jax


def stable_hash(text: str) -> int:
    """A 31-bit hash of `text` that is the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def root_key(seed: int) -> jax.Array:
    return jax.random.key(seed)


def cell_key(seed: int, cell_id: str) -> jax.Array:
    """Key of one cell: fold_in(root, stable_hash(cell_id)); adding cells changes no other key."""
    return jax.random.fold_in(root_key(seed), stable_hash(cell_id))
