"""`dfjax report`: every table, plot and page derived from one store."""

from __future__ import annotations

from pathlib import Path

from dfjax.reporting.leaderboard import write_leaderboard
from dfjax.reporting.plots import plot_gan_losses, plot_robustness_curves
from dfjax.reporting.queries import write_query_report
from dfjax.reporting.tables import (
    failures_markdown,
    flat_rows,
    robust_accuracy_markdown,
    sanity_markdown,
    table1_markdown,
    timings_markdown,
    training_markdown,
    white_box,
    write_csv_json,
)
from dfjax.reporting.transfer import write_transfer_report
from dfjax.store import Store


def write_report(store: Store, out: Path) -> list[Path]:
    """Write every table, plot and the leaderboard for the store's contents into `out`;
    returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = flat_rows(store)
    white = white_box(rows)  # transfer cells: their own tables (transfer.md, transfer.csv)
    write_csv_json(white, out)
    files = {
        "robust_accuracy.md": robust_accuracy_markdown(white),
        "table1.md": table1_markdown(white),
        "training.md": training_markdown(store),
        "failures.md": failures_markdown(rows),
        "sanity.md": sanity_markdown(white),
        "timings.md": timings_markdown(rows),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    written = [out / "results.csv", out / "results.json", *(out / n for n in files)]
    stored = store.rows()
    written += plot_robustness_curves(white_box(stored), out)  # extra_json: the traces
    written += plot_gan_losses(stored, out)  # env_json: the GAN histories (Fig. 4)
    written += write_query_report(white_box(stored), out)  # queries.md, the query curve
    written += write_transfer_report(rows, out)  # transfer.md, transfer.csv, heatmaps
    written += write_leaderboard(store, out / "leaderboard")
    return written
