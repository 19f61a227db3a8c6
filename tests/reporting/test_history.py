"""The history page: results.json at each git revision that changed it, bench timings by
suite and revision, the no-git fallback, byte-identical regeneration, and the CLI."""

import json
import os
import subprocess

import pytest

from dfjax.cli import main
from dfjax.reporting.history import history_html, write_history


def _row(robust, attack="pgd", delta=8.0):
    return {"cell_id": f"{attack}{delta}", "status": "ok", "dataset": "synthetic_faces",
            "model": "cnn7", "training": "standard", "defence": "none", "attack": attack,
            "delta": delta, "n_examples": 64, "robust_accuracy": robust}


def _git(repo, *args, date="2026-01-01T00:00:00+00:00"):
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           "-c", "commit.gpgsign=false", *args], check=True, env=env,
                          capture_output=True, text=True)
    return done.stdout.strip()


def _commit_results(repo, rows, date):
    (repo / "results").mkdir(parents=True, exist_ok=True)
    (repo / "results" / "results.json").write_text(json.dumps(rows))
    _git(repo, "add", "results/results.json")
    _git(repo, "commit", "-q", "-m", "results", date=date)
    return _git(repo, "rev-parse", "--short", "HEAD")


def _bench(path, revision, time, median, tracked):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "commit_info": {"id": revision, "time": time, "dirty": False},
        "benchmarks": [{"name": "test_pgd", "stats": {"median": median},
                        "extra_info": {"calibration_median_s": 0.1,
                                       "track_fgsm_delta8": tracked}}]}))


@pytest.fixture()
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    return repo


def test_each_committed_revision_oldest_first_and_regeneration_is_byte_identical(repo):
    first = _commit_results(repo, [_row(0.5)], "2026-01-01T00:00:00+00:00")
    second = _commit_results(repo, [_row(0.25), _row(0.75, "fgsm")],
                             "2026-01-02T00:00:00+00:00")
    page = history_html(repo / "results")
    assert page.index(f"<th>{first}<br>") < page.index(f"<th>{second}<br>")
    assert "<td>0.500</td>" in page and '<td class="down">0.250</td>' in page
    assert "<td>–</td><td>0.750</td>" in page  # fgsm was not in the first revision
    assert "working tree" not in page
    out = write_history(repo / "results")
    assert out == repo / "results" / "leaderboard" / "history.html"
    again = write_history(repo / "results").read_bytes()
    assert again == page.encode() and out.read_bytes() == again


def test_uncommitted_results_appear_as_the_working_tree(repo):
    _commit_results(repo, [_row(0.5)], "2026-01-01T00:00:00+00:00")
    (repo / "results" / "results.json").write_text(json.dumps([_row(0.625)]))
    page = history_html(repo / "results")
    assert "<th>working tree<br>" in page and '<td class="up">0.625</td>' in page


def test_outside_a_git_checkout_only_the_current_results_are_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.json").write_text(json.dumps([_row(0.5)]))
    page = history_html(results)
    assert "is not in a git checkout" in page and "the current results.json only" in page
    assert page.count("<th>working tree<br>") == 1 and "<td>0.500</td>" in page


def test_bench_files_grouped_by_suite_and_ordered_by_commit_time(tmp_path):
    bench = tmp_path / "results" / "bench"
    _bench(bench / "short-aaaaaaa.json", "a" * 40, "2026-01-02T00:00:00+00:00", 0.2, 0.5)
    _bench(bench / "short-bbbbbbb.json", "b" * 40, "2026-01-01T00:00:00+00:00", 0.4, 0.25)
    _bench(bench / "peers.json", "c" * 40, "2026-01-03T00:00:00+00:00", 1.0, 0.5)
    (bench / "broken.json").write_text("{")
    page = history_html(tmp_path / "results")
    short = page.split("<h3>suite short</h3>")[1]
    assert short.index("<th>bbbbbbb<br>") < short.index("<th>aaaaaaa<br>")  # by commit time
    assert "<td>0.4 s (×4)</td><td>0.2 s (×2)</td>" in short
    assert '<td>0.25</td><td class="up">0.5</td>' in short  # tracked figure, rising
    assert "<h3>suite peers</h3>" in page and "<polyline" in short
    assert "bench/broken.json could not be read" in page


def test_report_history_writes_the_page_without_a_store(repo, capsys):
    _commit_results(repo, [_row(0.5)], "2026-01-01T00:00:00+00:00")
    out = repo / "results"
    assert main(["report", "--history", "--out", str(out), "--store",
                 str(repo / "missing.sqlite")]) == 0
    path = out / "leaderboard" / "history.html"
    assert capsys.readouterr().out.strip() == str(path) and path.is_file()
    assert not (repo / "missing.sqlite").exists()
