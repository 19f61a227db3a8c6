"""A leaderboard board whose rows were scored by different evaluation code (different
`evaluation_code` fingerprints, e.g. one git revision edited between runs) says so."""

from dfjax.reporting.cell_rows import load_rows
from dfjax.reporting.leaderboard import index_html
from dfjax.runner.environment import evaluation_code_fingerprint
from dfjax.store import Store
from tests.reporting.test_leaderboard import ENV, EPS, make_cell, metrics


def _board(tmp_path, second_code):
    with Store(tmp_path / "s.sqlite") as store:
        store.put(make_cell("cnn7", "standard", "pgd", EPS), status="ok",
                  metrics=metrics(0.1, 0.9), env=dict(ENV))  # stamped with the current code
        env = {**ENV, "fingerprint": "0" * 16, "evaluation_code": second_code}
        store.put(make_cell("cnn6", "standard", "pgd", EPS), status="ok",
                  metrics=metrics(0.4, 0.85), env=env)
        return index_html(load_rows(store)).split('<h2 id="board-')[1]


def test_a_board_mixing_evaluation_code_says_so_above_its_table(tmp_path):
    board = _board(tmp_path, "1" * 16)
    current = evaluation_code_fingerprint()
    assert (f"mixes rows scored by 2 versions of the evaluation code (fingerprints "
            f"{', '.join(sorted([current, '1' * 16]))})") in board
    assert board.index("fingerprints") < board.index('<table class="board"')


def test_one_evaluation_code_gives_no_warning(tmp_path):
    assert "versions of the evaluation code" not in _board(tmp_path,
                                                           evaluation_code_fingerprint())
