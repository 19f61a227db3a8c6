"""Figures are deterministic PNG bytes; true-class probability is drawn on a log axis so
the paper's collapse to ~1e-9 is visible."""

import json

import numpy as np
import pytest

from dfjax.reporting import figures


def _row(delta, tcp, attack="pgd", trace=None):
    return {"status": "ok", "attack": attack, "delta": float(delta), "robust_accuracy": 0.5,
            **{f"adv_true_class_probability_{s}": tcp for s in ("mean", "median", "min")},
            "extra_json": json.dumps({"tcp_trace": trace} if trace else {})}


ROWS = [_row(0, 0.9), _row(8, 1e-9, trace={"mean": [0.9, 1e-3, 1e-9], "median": [0.9] * 3}),
        _row(16, 0.0)]


@pytest.mark.parametrize("draw", [figures.robustness_png, figures.table1_png,
                                  figures.tcp_trace_png])
def test_same_rows_give_the_same_png_bytes(draw):
    first, second = draw(ROWS, "t"), draw([dict(r) for r in ROWS], "t")
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second


def test_log_axis_spans_the_collapse(monkeypatch):
    """The Table I panel's y range reaches down to 1e-9 (and a probability of exactly 0 is
    drawn at the floor, not dropped): a linear axis would start at 0."""
    seen = []
    original = figures._png

    def capture(fig, title=""):
        seen.extend(ax.get_yscale() for ax in fig.axes)
        seen.append(min(ax.get_ylim()[0] for ax in fig.axes))
        return original(fig, title)

    monkeypatch.setattr(figures, "_png", capture)
    figures.table1_png(ROWS)
    assert seen[0] == "log" and seen[-1] <= figures.PROBABILITY_FLOOR


def test_nothing_to_draw_gives_none():
    one_budget = [_row(8, 0.5)]
    assert figures.robustness_png(one_budget) is None
    assert figures.table1_png(one_budget) is None
    assert figures.tcp_trace_png([_row(8, 0.5)]) is None
    assert figures.roc_png(None) is None
    assert figures.roc_png({"label": np.ones(4), "p_fake_clean": np.ones(4),
                            "p_fake_adv": np.ones(4)}) is None  # one class only
    assert figures.training_png([]) is None


def test_roc_and_training_figures_draw():
    examples = {"label": np.array([0, 0, 1, 1]), "p_fake_clean": np.array([.1, .4, .35, .8]),
                "p_fake_adv": np.array([.9, .6, .2, .1])}
    assert figures.roc_png(examples).startswith(b"\x89PNG")
    history = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "train_accuracy": 0.5,
                "val_accuracy": 0.6}]
    assert figures.training_png(history).startswith(b"\x89PNG")
