"""`dfjax report`: every table, plot and page derived from one store."""

from __future__ import annotations

from pathlib import Path

from dfjax.reporting.leaderboard import write_leaderboard
from dfjax.reporting.plots import plot_robustness_curves
from dfjax.reporting.tables import (
    failures_markdown, flat_rows, robust_accuracy_markdown, sanity_markdown, table1_markdown,
    timings_markdown, training_markdown, write_csv_json)
from dfjax.store import Store


def write_report(store: Store, out: Path) -> list[Path]:
    """Write every table, plot and the leaderboard for the store's contents into `out`;
    returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = flat_rows(store)
    write_csv_json(rows, out)
    files = {
        "robust_accuracy.md": robust_accuracy_markdown(rows),
        "table1.md": table1_markdown(rows),
        "training.md": training_markdown(store),
        "failures.md": failures_markdown(rows),
        "sanity.md": sanity_markdown(rows),
        "timings.md": timings_markdown(rows),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    written = [out / "results.csv", out / "results.json", *(out / n for n in files)]
    written += plot_robustness_curves(store.rows(), out)  # with extra_json: the traces
    written += write_leaderboard(store, out / "leaderboard")
    return written
