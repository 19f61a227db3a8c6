"""Tables derived from the store: CSV, JSON and Markdown. Never edited by hand."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from dfjax.config import ModelSpec, TrainSpec
from dfjax.store import Store

CELL_COLUMNS = ("cell_id", "status", "dataset", "model", "training", "defence", "attack",
                "norm", "eps", "delta", "seed", "n_examples", "detector_id")
TIMING_COLUMNS = ("wall_time", "compile_time", "images_per_second")
DROP = {"spec_json", "extra_json", "env_json", "created_at", "schema_version"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _fmt_prob(value: float | None) -> str:
    """Probabilities span 1 to 1e-18 under attack (the paper's Table I text)."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.2e}"


# Attacks whose robust accuracy must not rise with eps (iterative, starting from x or a
# random point in the ball); one-step attacks (fgsm) and random noise may overshoot.
ITERATIVE = ("pgd", "pgd_targeted", "apgd_ce", "apgd_margin", "square", "auto")
RISING_TOLERANCE = 0.02
SANITY_FLAGS = {
    "sanity_nondeterministic": "logits differ between identical forward passes",
    "sanity_probability_outputs": "the detector returns probabilities, not logits",
    "sanity_zero_gradients": "zero input gradients at the start on some examples",
    "sanity_black_box_beats_white_box": "a black-box attack broke a point the white-box "
                                        "ones missed",
    "sanity_rising_with_eps": "robust accuracy rises with eps for an iterative attack",
    "sanity_unbounded_not_broken": "an unbounded budget leaves > 5% robust",
    "sanity_more_steps_help": "twice the steps lower robust accuracy by > 2 points",
}


def transfer_source(row: dict[str, Any]) -> str | None:
    """The source detector of a transfer cell's row as 'model/training' labels (as the
    row's own model and training columns write them), or None for a white-box row. Read
    from the row's `source` (flat_rows), else its spec (`spec` parsed, or `spec_json`)."""
    if "source" in row:
        return row["source"]
    spec = row.get("spec")
    if spec is None:
        try:
            spec = json.loads(row.get("spec_json") or "{}")
        except json.JSONDecodeError:
            return None
    source = spec.get("source") if isinstance(spec, dict) else None
    if not source:
        return None
    try:
        return (f"{ModelSpec(**source['model']).label()}/"
                f"{TrainSpec(**source['training']).label()}")
    except (KeyError, TypeError):
        return "unknown source"


def white_box(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that are not transfer cells (see transfer_source)."""
    return [r for r in rows if transfer_source(r) is None]


def flat_rows(store: Store) -> list[dict[str, Any]]:
    """Every stored cell as a flat dict (axes, metrics, timings, error), without blobs,
    with the cross-cell sanity flag sanity_rising_with_eps added (iterative attacks);
    a transfer cell's row has `source` (transfer_source), a white-box row has none."""
    rows = []
    for row in store.rows():
        source = transfer_source(row)
        rows.append({k: v for k, v in row.items() if k not in DROP}
                    | ({"source": source} if source is not None else {}))
    add_rising_with_eps(rows)
    return rows


def add_rising_with_eps(rows: list[dict[str, Any]]) -> None:
    """sanity_rising_with_eps = 1.0 on a cell of an iterative attack whose robust accuracy
    exceeds that of a smaller eps (same detector, defence, attack, norm) by more than
    RISING_TOLERANCE (Carlini et al. 2019: more budget must never help the model).
    White-box cells only: a transfer attack is not one the target's robustness bounds."""
    keys = ("dataset", "model", "training", "defence", "attack", "norm", "n_examples")
    ok = [r for r in rows if r["status"] == "ok" and transfer_source(r) is None]
    for group in _group(ok, keys).values():
        if group[0]["attack"].split("[")[0] not in ITERATIVE:
            continue
        lowest = math.inf
        for row in sorted(group, key=lambda r: r["eps"]):
            robust = row.get("robust_accuracy", math.nan)
            row["sanity_rising_with_eps"] = float(robust > lowest + RISING_TOLERANCE)
            lowest = min(lowest, robust)


def fired_flags(row: dict[str, Any]) -> list[str]:
    return [name for name in SANITY_FLAGS if row.get(name, 0.0) == 1.0]


def _defence_heading(group: list[dict[str, Any]], defence: str) -> str:
    if any(r.get("adaptive") == 0.0 for r in group):
        return f"{defence}, NON-ADAPTIVE: the attack ignored the defence"
    return defence


def write_csv_json(rows: list[dict[str, Any]], out: Path) -> None:
    metric_names = sorted({k for r in rows for k in r} - set(CELL_COLUMNS) - set(TIMING_COLUMNS)
                          - {"error"})
    columns = [*CELL_COLUMNS, *metric_names, *TIMING_COLUMNS, "error"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
             for r in rows]
    (out / "results.json").write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n")


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value


def _group(rows, keys):
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


def pivot_markdown(rows: list[dict[str, Any]], value: str, fmt=_fmt) -> str:
    """Rows: attack; columns: delta; cells: `value` (failed cells show 'failed')."""
    deltas = sorted({r["delta"] for r in rows})
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    lines = ["| attack | " + " | ".join(f"{d:g}" for d in deltas) + " |",
             "|---|" + "---|" * len(deltas)]
    for attack in attacks:
        by_delta = {r["delta"]: r for r in rows if r["attack"] == attack}
        cells = []
        for d in deltas:
            r = by_delta.get(d)
            cells.append("" if r is None else ("failed" if r["status"] != "ok"
                                               else fmt(r.get(value))))
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robust_accuracy_markdown(rows: list[dict[str, Any]]) -> str:
    parts = ["# Robust accuracy against delta\n",
             "Fraction of evaluation examples still classified correctly after the attack "
             "(delta = eps x 255, Linf unless the attack says otherwise). delta 0 is clean "
             "accuracy. Generated by `dfjax report` from the results store.\n"]
    keys = ("dataset", "model", "training", "defence", "n_examples")
    for (dataset, model, training, defence, n), group in sorted(_group(rows, keys).items()):
        parts.append(f"## {dataset} x {model} (training: {training}, defence: "
                     f"{_defence_heading(group, defence)}; n = {n})\n")
        fired = sorted({flag for r in group for flag in fired_flags(r)})
        if fired:
            parts.append("**Sanity warnings** (see sanity.md): "
                         + "; ".join(SANITY_FLAGS[f] for f in fired) + "\n")
        parts.append(pivot_markdown(group, "robust_accuracy") + "\n")
        parts.append("Attack success rate (of clean-correct examples flipped):\n")
        parts.append(pivot_markdown(group, "attack_success_rate") + "\n")
        certified = _certified_markdown(group)
        if certified:
            parts.append(certified)
        if any("video_adv_accuracy" in r for r in group):
            parts.append("Video level (a video's score = the mean fake probability of its "
                         "frames): accuracy under attack\n")
            parts.append(pivot_markdown(group, "video_adv_accuracy") + "\n")
            parts.append("Video-level ROC AUC under attack:\n")
            parts.append(pivot_markdown(group, "video_adv_roc_auc") + "\n")
    return "\n".join(parts)


def _certified_markdown(group: list[dict[str, Any]]) -> str:
    """The CERTIFIED accuracy of a smoothed detector (Cohen et al. 2019) against the L2
    radius, from the group's first row that has it (it is computed once per detector);
    '' if none has."""
    row = next((r for r in group if "certified_accuracy_l2_0" in r), None)
    if row is None:
        return ""
    radii = sorted((float(k.removeprefix("certified_accuracy_l2_")), k) for k in row
                   if k.startswith("certified_accuracy_l2_"))
    return ("CERTIFIED accuracy (randomized smoothing, L2 radius; a certificate, not an "
            f"attack; n = {int(row.get('certified_n', 0))} noise samples per example, "
            f"abstained on {_fmt(row.get('certified_abstention_rate'))}):\n\n"
            "| L2 radius | " + " | ".join(f"{r:g}" for r, _ in radii) + " |\n"
            "|---|" + "---|" * len(radii) + "\n"
            "| certified accuracy | " + " | ".join(_fmt(row[k]) for _, k in radii) + " |\n")


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """The paper's Table I: true-class probability against delta, per attack."""
    parts = ["# Table I: probability of the true class against delta\n",
             "As in Dhese et al., Table I: p(true class | x + perturbation) on the "
             "evaluation examples, for each perturbation size delta (1/255 units). "
             "Mean, median and min over examples.\n"]
    keys = ("dataset", "model", "training", "defence", "n_examples")
    for (dataset, model, training, defence, n), group in sorted(_group(rows, keys).items()):
        parts.append(f"## {dataset} x {model} (training: {training}, defence: "
                     f"{_defence_heading(group, defence)}; n = {n})\n")
        for stat in ("mean", "median", "min"):
            parts.append(f"{stat}:\n")
            parts.append(pivot_markdown(group, f"adv_true_class_probability_{stat}",
                                        fmt=_fmt_prob) + "\n")
    return "\n".join(parts)


def training_markdown(store: Store) -> str:
    parts = ["# Training curves\n", "Per-epoch loss and accuracy of every detector "
             "(the paper's Figs. 2 and 5).\n"]
    for d in store.detectors():
        spec = d["spec"]
        parts.append(f"## {spec['dataset']['name']} x {spec['model']['name']} "
                     f"({spec['training']['recipe']}), detector {d['detector_id']}, "
                     f"trained in {_fmt(d['train_seconds'], 1)} s\n")
        parts.append("| epoch | train loss | train acc | val loss | val acc | seconds |")
        parts.append("|---|---|---|---|---|---|")
        for h in d["history"]:
            parts.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_accuracy']:.4f} | "
                         f"{h['val_loss']:.4f} | {h['val_accuracy']:.4f} | {h['seconds']:.1f} |")
        parts.append("")
    return "\n".join(parts)


def attack_label(row: dict[str, Any]) -> str:
    """The row's attack, with '(transfer from SOURCE)' on a transfer cell's."""
    source = transfer_source(row)
    return row["attack"] + (f" (transfer from {source})" if source is not None else "")


def failures_markdown(rows: list[dict[str, Any]]) -> str:
    failed = [r for r in rows if r["status"] != "ok"]
    lines = ["# Failed cells\n", f"{len(failed)} of {len(rows)} cells failed.\n"]
    for r in failed:
        first_line = (r.get("error") or "").splitlines()[0] if r.get("error") else ""
        lines.append(f"- {r['dataset']} x {r['model']} x {r['training']} x {r['defence']} x "
                     f"{attack_label(r)} delta={r['delta']:g}: {first_line}")
    return "\n".join(lines) + "\n"


def sanity_markdown(rows: list[dict[str, Any]]) -> str:
    """Every cell on which a sanity check fired, and how often each fired."""
    ok = [r for r in rows if r["status"] == "ok"]
    lines = ["# Sanity checks\n",
             "Checks on every cell (Carlini et al. 2019; AutoAttack), made for binary "
             "detectors: a fired check means the evaluation, not the detector, may be at "
             "fault. See dfjax/attacks/sanity.py.\n", "| check | cells fired | of |",
             "|---|---|---|"]
    for name, text in SANITY_FLAGS.items():
        checked = [r for r in ok if name in r]
        lines.append(f"| {text} (`{name}`) | {sum(r[name] == 1.0 for r in checked)} | "
                     f"{len(checked)} |")
    lines.append("")
    for r in ok:
        fired = fired_flags(r)
        if fired:
            lines.append(f"- {r['dataset']} x {r['model']} x {r['training']} x {r['defence']} x "
                         f"{r['attack']} delta={r['delta']:g}: {', '.join(fired)}")
    return "\n".join(lines) + "\n"


def timings_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Cell timings\n", "Wall time per cell (s), compile time (s), attacked "
             "images per second (excluding compilation). Machine-dependent.\n",
             "| dataset | model | training | attack | delta | wall s | compile s | img/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['training']} | {attack_label(r)} | "
                     f"{r['delta']:g} | {_fmt(r['wall_time'], 2)} | {_fmt(r['compile_time'], 2)}"
                     f" | {_fmt(r['images_per_second'], 1)} |")
    return "\n".join(lines) + "\n"
