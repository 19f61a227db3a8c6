"""Report tables and curves keep evaluations on different numbers of examples apart: the
default matrix evaluates cnn7 on 256 examples and, behind defences, on 128; a table or
curve that mixed them would show two numbers for one cell position."""

from dfjax.reporting.plots import plot_robustness_curves
from dfjax.reporting.tables import add_rising_with_eps, robust_accuracy_markdown, table1_markdown


def _row(delta, robust, n, attack="pgd[num_steps=10]"):
    return {"dataset": "synthetic_faces", "model": "cnn7", "training": "standard",
            "defence": "none", "attack": attack, "norm": "linf", "eps": delta / 255,
            "delta": float(delta), "n_examples": n, "status": "ok", "adaptive": 1.0,
            "robust_accuracy": robust, "attack_success_rate": 1 - robust,
            **{f"adv_true_class_probability_{s}": robust for s in ("mean", "median", "min")}}


ROWS = [_row(0, 0.8, 256), _row(8, 0.1, 256), _row(16, 0.0, 256), _row(8, 0.3, 128),
        _row(8, 0.25, 128, attack="auto")]


def test_tables_have_one_section_per_number_of_examples():
    text = robust_accuracy_markdown(ROWS)
    assert text.count("defence: none; n = 256)") == 1
    assert text.count("defence: none; n = 128)") == 1
    section_128 = text.split("n = 128)")[1].split("## ")[0]
    assert "| pgd[num_steps=10] | 0.300 |" in section_128 and "0.100" not in section_128
    table1 = table1_markdown(ROWS)
    assert "n = 256)" in table1 and "n = 128)" in table1


def test_rising_with_eps_compares_budgets_on_the_same_examples_only():
    """0.3 on 128 examples at 8/255 is above 0.0 on 256 at 16/255, yet nothing rose."""
    rows = [dict(r) for r in ROWS]
    add_rising_with_eps(rows)
    assert all(r["sanity_rising_with_eps"] == 0.0 for r in rows if r["attack"].startswith("pgd"))


def test_curves_only_for_several_budgets_and_named_by_size_when_sizes_differ(tmp_path):
    written = plot_robustness_curves(ROWS, tmp_path)  # n = 128 has one budget: no curve
    assert [p.name for p in written] == ["curves_synthetic_faces_cnn7_standard_none.png",
                                         "table1_synthetic_faces_cnn7_standard_none.png"]
    two_sizes = ROWS + [_row(16, 0.05, 128)]
    written = plot_robustness_curves(two_sizes, tmp_path)
    assert sorted(p.name for p in written if p.name.startswith("curves_")) == [
        "curves_synthetic_faces_cnn7_standard_none_n128.png",
        "curves_synthetic_faces_cnn7_standard_none_n256.png"]


def test_smoothing_groups_show_certified_accuracy_labelled_as_certified():
    smoothed = [dict(_row(8, 0.2, 128), defence="smoothing", certified_n=200.0,
                     certified_abstention_rate=0.125, **{"certified_accuracy_l2_0": 0.5625,
                                                         "certified_accuracy_l2_0.25": 0.164})]
    text = robust_accuracy_markdown(ROWS + smoothed)
    section = text.split("defence: smoothing; n = 128)")[1]
    assert "CERTIFIED accuracy" in section and "n = 200 noise samples" in section
    assert "| L2 radius | 0 | 0.25 |" in section
    assert "| certified accuracy | 0.562 | 0.164 |" in section
    assert "CERTIFIED" not in text.split("defence: smoothing")[0]
