"""An unwritable results folder is refused before any work, naming the path: `dfjax run
--store`, `dfjax report --out` and run_all.py. As root, chmod does not stop writes, so
each unwritable place is a path under a regular file; the chmod variant runs as non-root.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfjax.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def blocked(tmp_path) -> Path:
    """A folder path that cannot be made: it lies under a regular file."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    return blocker / "results"


def test_run_with_an_unwritable_store_folder_fails_before_work(blocked, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("DFJAX_DATA_DIR", str(tmp_path / "data"))
    store = blocked / "results.sqlite"
    assert main(["run", "--config", "smoke", "--store", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"results store {store}" in err and "folder" in err
    assert not (tmp_path / "data").exists()  # no dataset was prepared


def test_report_to_an_unwritable_folder_fails_naming_it(blocked, tmp_path, capsys):
    from dfjax.store import Store

    Store(tmp_path / "s.sqlite").close()
    assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--out", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert f"report folder {blocked}" in err and "cannot write there" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the other tests "
                    "cover root with a path under a regular file")
def test_report_to_a_read_only_folder_fails_naming_it(tmp_path, capsys):
    from dfjax.store import Store

    Store(tmp_path / "s.sqlite").close()
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--out", str(out)]) == 2
        assert f"report folder {out}" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


def test_run_all_refuses_an_unwritable_results_folder_before_running(blocked, tmp_path):
    store = tmp_path / "runs" / "default.sqlite"
    done = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--out", str(blocked),
                           "--store", str(store)], capture_output=True, text=True,
                          check=False, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    assert f"results folder (--out) {blocked}" in done.stderr
    assert not store.exists()  # nothing ran
