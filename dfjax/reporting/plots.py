"""Plot files derived from the store, per detector and defence: robustness curves, the
paper's Table I (true-class probability against delta, log axis) and true-class
probability against attack iteration (dfjax.reporting.figures draws them); per GAN-made
dataset, the paper's Fig. 4 (the GAN's D and G losses per epoch)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from dfjax.reporting.figures import (
    _png,
    file_slug,
    robustness_png,
    table1_png,
    tcp_trace_png,
)

FIGURES = (("curves", robustness_png), ("table1", table1_png), ("trace", tcp_trace_png))


def plot_robustness_curves(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per dataset x model x training x defence x number of examples with at least two
    budgets: `curves_<slug>.png` (robust accuracy and mean true-class probability against
    delta), `table1_<slug>.png` (mean, median and min true-class probability against delta,
    a panel per attack) and, where attacks stored traces, `trace_<slug>.png` (against
    iteration). The slug carries `_n<n>` where the same detector and defence have curves on
    more than one number of examples."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok":
            groups[(r["dataset"], r["model"], r["training"], r["defence"],
                    r["n_examples"])].append(r)
    groups = {k: g for k, g in groups.items() if len({r["delta"] for r in g}) >= 2}
    sizes: dict[tuple, int] = defaultdict(int)  # a single budget is no curve: left out
    for key in groups:
        sizes[key[:4]] += 1
    written = []
    for key, group in sorted(groups.items()):
        name = list(key[:4]) + ([f"n{key[4]}"] if sizes[key[:4]] > 1 else [])
        slug = file_slug("_".join(name))
        title = " x ".join(key[:4]) + f" (n = {key[4]})"
        for prefix, draw in FIGURES:
            png = draw(group, title)
            if png is not None:
                path = out / f"{prefix}_{slug}.png"
                path.write_bytes(png)
                written.append(path)
    return written


def gan_losses_png(history: list[dict[str, Any]], title: str = "") -> bytes | None:
    """The paper's Fig. 4: the discriminator's and the generator's loss per epoch of a GAN
    (history: [{epoch, d_loss, g_loss}, ...]); None for an empty history."""
    from matplotlib.figure import Figure

    if not history:
        return None
    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["d_loss"] for h in history], marker="o", label="D loss")
    ax.plot(epochs, [h["g_loss"] for h in history], marker="o", label="G loss")
    ax.set(xlabel="epoch", ylabel="loss (binary cross-entropy)")
    ax.legend(fontsize=8)
    return _png(fig, title)


def plot_gan_losses(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """`fig4_<dataset>_<size>px_n<examples>.png` for every dataset of the store whose rows
    carry a GAN history (env `dataset_gan_history`: gan_fakes), one per dataset spec."""
    histories: dict[str, tuple[dict, list]] = {}
    for r in rows:
        history = json.loads(r.get("env_json") or "{}").get("dataset_gan_history")
        if history:
            dataset = json.loads(r["spec_json"])["dataset"]
            histories.setdefault(json.dumps(dataset, sort_keys=True), (r, json.loads(history)))
    written = []
    for key, (row, history) in sorted(histories.items()):
        dataset = json.loads(key)
        name = (f"{row['dataset']}_{dataset['image_size']}px_n{dataset['num_examples']}"
                + (f"_seed{dataset['seed']}" if dataset.get("seed") else ""))
        slug = file_slug(name)
        title = (f"GAN losses: {row['dataset']} ({dataset['image_size']} px, "
                 f"{dataset['num_examples']} examples)")
        png = gan_losses_png(history, title)
        if png is not None:
            path = out / f"fig4_{slug}.png"
            path.write_bytes(png)
            written.append(path)
    return written
