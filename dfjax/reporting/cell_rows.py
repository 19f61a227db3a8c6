"""Stored cell rows as the report's pages read them: parsed JSON columns, detector names
and page slugs, the `auto` ensemble, and provenance (where every number came from)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from dfjax.reporting.tables import add_rising_with_eps, transfer_source
from dfjax.store import Store

DETECTOR_SOURCES = {"trained": "trained in this run", "cache": "loaded from cache",
                    "user": "the user's own (dfjax.benchmark)"}
USER_TRAINING = "user"  # the training label of a user-benchmarked detector's rows


def detector_name(model: str, training: str, defence: str) -> str:
    return f"{model} · {training} · defence {defence}"


def detector_slug(dataset: str, model: str, training: str, defence: str) -> str:
    """A file name for the detector page: readable names (options dropped) plus a short
    hash of the full labels, so two option sets never share a page."""
    short = "_".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", label.split("[")[0]).strip("-")
                     for label in (dataset, model, training, defence))
    digest = hashlib.sha256("|".join((dataset, model, training, defence)).encode())
    return f"{short}_{digest.hexdigest()[:8]}"


def load_rows(store: Store) -> list[dict[str, Any]]:
    """Every stored cell row with its JSON columns parsed (`env`, `extra`, `spec`) and the
    cross-cell flag sanity_rising_with_eps added (as in tables.flat_rows)."""
    rows = store.rows()
    add_rising_with_eps(rows)
    for row in rows:
        for column, key in (("env_json", "env"), ("extra_json", "extra"), ("spec_json", "spec")):
            try:
                row[key] = json.loads(row.get(column) or "{}")
            except json.JSONDecodeError:
                row[key] = {}
    return rows


def number(value: Any) -> float | None:
    """A float, or None for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def is_auto(row: dict[str, Any]) -> bool:
    return row["attack"].split("[")[0] == "auto"


def _initialisation_from_spec(options: dict[str, Any]) -> str:
    """Where a detector's weights started, from its training options (rows stored
    without env `detector_init`; that one also names the weights file's sha256)."""
    if options.get("init_from"):
        return f"init_from {options['init_from']}"
    if options.get("warm_start_epochs"):
        return f"warm start: standard, {options['warm_start_epochs']} epochs"
    return "from scratch"


PROVENANCE_FIELDS = (  # (label, function of a cell row -> text)
    ("examples evaluated", lambda c: str(c["n_examples"])),
    ("git revision", lambda c: c["env"].get("git_revision", "unknown")
     + (" (dirty)" if c["env"].get("git_dirty") == "true" else "")),
    ("dfjax", lambda c: c["env"].get("dfjax", "unknown")),
    ("dataset version", lambda c: c["env"].get("dataset_version")
     or c["spec"].get("dataset", {}).get("data_version", "unknown")),
    ("detector", lambda c: DETECTOR_SOURCES.get(c["env"].get("detector_source", ""),
                                                "unknown source")
     + (f", trained {c['env']['detector_trained_at']}"
        if c["env"].get("detector_trained_at", "unknown") != "unknown" else "")),
    ("initialisation", lambda c: c["env"].get("detector_init")
     or _initialisation_from_spec(c["spec"].get("training", {}).get("options", {}))),
    ("machine", lambda c: ", ".join(v for v in (c["env"].get("cpu"), c["env"].get("device"))
                                    if v) or "unknown"),
)


def provenance(cells: list[dict[str, Any]]) -> dict[str, str]:
    """{field: its distinct values over the cells, joined by '; '}."""
    return {label: "; ".join(sorted({value(c) for c in cells}))
            for label, value in PROVENANCE_FIELDS}


def revision_warning(cells: list[dict[str, Any]]) -> str | None:
    """Why the cells may not be comparable (several git revisions, or a modified work
    tree), or None."""
    revisions = sorted({c["env"].get("git_revision", "unknown") for c in cells})
    dirty = any(c["env"].get("git_dirty") == "true" for c in cells)
    problems = []
    if len(revisions) > 1:
        problems.append(f"mixes rows from {len(revisions)} code revisions "
                        f"({', '.join(revisions)})")
    if dirty:
        problems.append("has rows from a modified (dirty) work tree")
    if not problems:
        return None
    return "This board " + " and ".join(problems) + ": its rows may not be comparable."


def worst_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cell behind the worst-case number of `cells` (one budget and n): the `auto`
    ensemble's where it ran, else the attack with the lowest robust accuracy; None when
    no cell succeeded with a robust accuracy. Transfer cells count only where no
    white-box cell did (a transfer entry): a detector's worst case is over the attacks
    that saw it."""
    ok = [c for c in cells if c["status"] == "ok"
          and number(c.get("robust_accuracy")) is not None]
    ok = [c for c in ok if transfer_source(c) is None] or ok
    pool = [c for c in ok if is_auto(c)] or ok
    return min(pool, key=lambda c: (c["robust_accuracy"], c["attack"])) if pool else None
