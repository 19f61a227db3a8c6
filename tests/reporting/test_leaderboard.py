"""The static leaderboard (dfjax/reporting/leaderboard.py) from small synthetic stores:
no training, cells and metrics written with Store.put."""

import re

import numpy as np
import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.metrics.examples import png
from dfjax.reporting.cell_rows import load_rows
from dfjax.reporting.leaderboard import (best_known, group_boards, index_html,
                                        worst_case, write_leaderboard)
from dfjax.reporting.tables import SANITY_FLAGS
from dfjax.store import Store

EPS = 8 / 255
ENV = {"git_revision": "abc1234", "git_dirty": "false", "dfjax": "0.1.0",
       "dataset_version": "1.1.0", "detector_source": "trained",
       "detector_trained_at": "2026-12-02T10:00:00Z", "cpu": "test cpu", "platform": "linux"}
# detector (model, training) -> {eps: {attack: robust accuracy, or an error message}}
RESULTS = {
    ("cnn7", "standard"): {EPS: {"pgd": 0.10, "fgsm": 0.30, "auto": 0.05},
                           2 * EPS: {"pgd": 0.0, "fgsm": 0.20}},
    ("cnn6", "standard"): {EPS: {"pgd": 0.40, "fgsm": 0.50}},
    ("cnn7", "pgd_at"): {EPS: {"pgd": 0.60, "fgsm": 0.45, "auto": 0.50}},
    ("meso4", "standard"): {EPS: {"pgd": "RuntimeError: out of memory\n  at step 3",
                                  "fgsm": 0.25}},
}
CLEAN = {"cnn7": 0.9, "cnn6": 0.85, "meso4": 0.8}


def make_cell(model, training, attack, eps, dataset="synthetic_faces", norm="linf"):
    return Cell(dataset=DatasetSpec(name=dataset, image_size=32), model=ModelSpec(name=model),
                training=TrainSpec(recipe=training), defence=DefenceSpec(),
                attack=AttackSpec(name=attack, norm=norm, eps=eps), n_eval=8, seed=0)


def metrics(robust, clean):
    return {"robust_accuracy": robust, "clean_accuracy": clean, "clean_roc_auc": 0.95,
            "adaptive": 1.0, **{f"adv_true_class_probability_{s}": max(robust, 1e-6)
                                for s in ("mean", "median", "min")}}


def examples(n=8):
    label = np.arange(n) % 2
    return {"index": np.arange(n), "label": label,
            "p_fake_clean": np.where(label == 1, 0.9, 0.1),
            "p_fake_adv": np.where(label == 1, 0.2, 0.7)}


def gallery():
    image = np.linspace(0, 1, 4 * 4 * 3).reshape(4, 4, 3)
    return [{"index": 1, "label": 1, "p_fake_clean": 0.9, "p_fake_adv": 0.2,
             "clean_png": png(image), "adv_png": png(1 - image),
             "perturbation_png": png(np.full((4, 4, 3), 0.5))}]


def build_store(path, env=ENV):
    """A store with the four detectors of RESULTS on one board (linf, eps 8/255), clean
    cells at eps 0, one failed cell (meso4 pgd), examples and a gallery on cnn7's auto."""
    store = Store(path)
    for (model, training), by_eps in RESULTS.items():
        clean = CLEAN[model] - (0.2 if training == "pgd_at" else 0.0)
        store.put(make_cell(model, training, "pgd", 0.0), status="ok",
                  metrics=metrics(clean, clean), env=env, timings={"images_per_second": 80.0})
        for eps, attacks in by_eps.items():
            for attack, result in attacks.items():
                cell = make_cell(model, training, attack, eps)
                if isinstance(result, str):
                    store.put(cell, status="failed", error=result, env=env)
                    continue
                keep = (model, training, attack, eps) == ("cnn7", "standard", "auto", EPS)
                store.put(cell, status="ok", metrics=metrics(result, clean), env=env,
                          timings={"images_per_second": 80.0},
                          examples=examples() if keep else None,
                          gallery=gallery() if keep else None)
        if (model, training) == ("cnn7", "standard"):
            store.put_detector(cell.detector_id, cell.to_dict(), [
                {"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5 + e / 10,
                 "val_loss": 1.1 / e, "val_accuracy": 0.5 + e / 11, "seconds": 1.0}
                for e in (1, 2, 3)], 3.0)
    return store


def board_tables(page):
    return re.findall(r'<table class="board".*?</table>', page, flags=re.S)


def table_models(table):
    """Model names of a board table's rows, top to bottom."""
    return re.findall(r'<tr data-slug="[^"]*"><td data-v="([^"]*)"', table)


@pytest.fixture
def store(tmp_path):
    with build_store(tmp_path / "store.sqlite") as store:
        yield store


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(store path, the pages written from it): written once, as figures take seconds."""
    folder = tmp_path_factory.mktemp("leaderboard")
    with build_store(folder / "store.sqlite") as store:
        return folder / "store.sqlite", write_leaderboard(store, folder / "lb")


def test_regenerating_from_the_same_store_gives_byte_identical_pages(written, tmp_path):
    path, first = written
    with Store(path) as store:
        second = write_leaderboard(store, tmp_path / "again")
    assert [p.relative_to(first[0].parent) for p in first] == [
        p.relative_to(tmp_path / "again") for p in second]
    assert len(first) == 1 + len(RESULTS)  # index + one page per detector
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_one_row_per_detector_ranked_by_worst_case_robust_accuracy(written):
    """One board (linf, 8/255) holding the four detectors, highest worst case first; the
    second budget (16/255) is its own board with cnn7 standard only."""
    tables = board_tables(written[1][0].read_text())
    assert len(tables) == 2
    assert table_models(tables[0]) == ["cnn7", "cnn6", "meso4", "cnn7"]  # 0.5 0.4 0.25 0.05
    assert tables[0].count("<tr data-slug=") == len(RESULTS)
    assert table_models(tables[1]) == ["cnn7"]


def test_boards_group_by_dataset_norm_and_eps(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        for dataset, norm, eps in [("synthetic_faces", "linf", EPS), ("synthetic_faces", "l2", EPS),
                                   ("dfdc", "linf", EPS), ("synthetic_faces", "linf", 0.0),
                                   ("synthetic_faces", "linf", 2 * EPS)]:
            for model in ("cnn7", "cnn6"):
                store.put(make_cell(model, "standard", "pgd", eps, dataset, norm), status="ok",
                          metrics=metrics(0.3, 0.9), env=ENV)
        boards = group_boards(load_rows(store))
    assert list(boards) == [("dfdc", "linf", EPS), ("synthetic_faces", "l2", EPS),
                            ("synthetic_faces", "linf", EPS),
                            ("synthetic_faces", "linf", 2 * EPS)]  # eps 0 ranks nothing
    assert all(sorted(e.model for e in entries) == ["cnn6", "cnn7"]
               for entries in boards.values())


def test_worst_case_is_auto_when_it_ran_else_the_minimum_labelled_so(store):
    rows = load_rows(store)
    entries = {(e.model, e.training): e for e in group_boards(rows)[
        ("synthetic_faces", "linf", EPS)]}
    # auto ran: its number, though fgsm alone found more (that is the "best known")
    assert worst_case(entries[("cnn7", "pgd_at")]) == (0.50, "auto")
    assert best_known(entries[("cnn7", "pgd_at")]) == (0.45, "fgsm")
    assert worst_case(entries[("cnn6", "standard")]) == (0.40, "min of 2 attacks")
    assert worst_case(entries[("meso4", "standard")]) == (0.25, "min of 1 attack")
    row = next(r for r in board_tables(index_html(rows))[0].split("<tr ")
               if r.startswith('data-slug="synthetic_faces_cnn6'))
    assert "0.400<br><small>min of 2 attacks</small>" in row


def test_failed_cell_marked_on_its_row_and_listed_with_its_error(written):
    written = written[1]
    index = written[0].read_text()
    meso_row = next(r for r in index.split("<tr ") if r.startswith('data-slug="synthetic_faces_'
                                                                    'meso4'))
    assert '<span class="mark mark-failed">1 failed</span>' in meso_row
    assert 'class="failed" title="RuntimeError: out of memory">failed</td>' in meso_row
    page = next(p for p in written if p.name.startswith("synthetic_faces_meso4")).read_text()
    assert "Failed cells (1)" in page
    assert '<pre class="error">RuntimeError: out of memory\n  at step 3</pre>' in page


def test_fired_sanity_flag_marks_the_row_possibly_unreliable_with_its_explanation(store):
    store.put(make_cell("cnn6", "standard", "fgsm", EPS), status="ok",
              metrics={**metrics(0.5, 0.85), "sanity_zero_gradients": 1.0}, env=ENV)
    index = index_html(load_rows(store))
    rows = {r.split('"')[1].split("_")[2]: r for r in board_tables(index)[0].split("<tr ")[1:]}
    assert "evaluation possibly unreliable" in rows["cnn6"]
    assert SANITY_FLAGS["sanity_zero_gradients"] in rows["cnn6"]
    assert "evaluation possibly unreliable" not in rows["meso4"]


def test_empty_store_gives_a_page_that_says_so(tmp_path):
    with Store(tmp_path / "empty.sqlite") as store:
        written = write_leaderboard(store, tmp_path / "lb")
    page = written[0].read_text()
    assert written == [tmp_path / "lb" / "index.html"]
    assert "The results store is empty" in page and "<table" not in page


def test_board_mixing_two_revisions_says_so_at_its_top(store):
    store.put(make_cell("cnn6", "standard", "pgd", EPS), status="ok",
              metrics=metrics(0.4, 0.85), env={**ENV, "git_revision": "def5678"})
    index = index_html(load_rows(store))
    first_board, second_board = index.split('<h2 id="board-')[1:3]
    assert "mixes rows from 2 code revisions (abc1234, def5678)" in first_board
    assert first_board.index("revisions") < first_board.index('<table class="board"')
    assert "revisions" not in second_board.split("<table")[0]


def test_detector_page_embeds_figures_and_gallery_as_data_uris(written):
    page = next(p for p in written[1] if p.name.startswith("synthetic_faces_cnn7_standard"))
    text = page.read_text()
    assert "<h1>cnn7 · standard · defence none on synthetic_faces</h1>" in text
    for caption in ("robust accuracy and true-class probability against delta",
                    "Table I: true-class probability", "ROC clean vs attacked: auto",
                    "training curves", "perturbation (amplified)"):
        assert f'alt="{caption}' in text, caption
    assert "src=\"http" not in text and "<link" not in text and "src=\"/" not in text


def test_user_benchmarked_detector_is_a_row_like_any_other(store):
    """Training `user` (dfjax.benchmark's rows): ranked on the board with its numbers; no
    parameter count guessed from its name (the user's, here also a dfjax model's)."""
    cell = Cell(dataset=DatasetSpec(name="synthetic_faces", image_size=32),
                model=ModelSpec(name="cnn7"),
                training=TrainSpec(recipe="user", epochs=0, batch_size=0, learning_rate=0.0),
                defence=DefenceSpec(), attack=AttackSpec(name="pgd", eps=EPS), n_eval=8, seed=0)
    store.put(cell, status="ok", metrics=metrics(0.45, 0.9),
              env={**ENV, "detector_source": "user"})
    table = board_tables(index_html(load_rows(store)))[0]
    assert table_models(table) == ["cnn7", "cnn7", "cnn6", "meso4", "cnn7"]  # 0.5 0.45 ...
    user_row = table.split("<tr ")[2]
    assert "<td data-v=\"user\" class=\"text\" title=\"user\">user</td>" in user_row
    assert "the user&#x27;s own (dfjax.benchmark)" in user_row
    assert '<td>–</td>' in user_row  # parameters unknown


def test_whole_report_regenerates_byte_identical(written, tmp_path):
    """Every file `dfjax report` writes from one store (CSV, JSON, Markdown tables, PNG
    figures, pages) is byte-identical when written again into another folder."""
    from dfjax.reporting.report import write_report

    path, _ = written
    with Store(path) as store:
        first = write_report(store, tmp_path / "a")
        second = write_report(store, tmp_path / "b")
    assert len(first) > len(RESULTS) + 8
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
