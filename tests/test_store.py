import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.store import (
    SCHEMA_VERSION,
    ClaimHeartbeat,
    Store,
    StoreError,
    _process_start,
    claim_is_live,
    claim_owner,
)


def _cell(eps):
    return Cell(dataset=DatasetSpec(name="synthetic_faces"), model=ModelSpec(name="cnn7"),
                training=TrainSpec(), defence=DefenceSpec(),
                attack=AttackSpec(name="fgsm", eps=eps),
                n_eval=4, seed=0)


def test_put_rows_and_resume_flags(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        ok, bad = _cell(0.1), _cell(0.2)
        store.put(ok, status="ok", metrics={"robust_accuracy": 0.25, "roc_auc": float("nan")},
                  timings={"wall_time": 1.5})
        store.put(bad, status="failed", error="ValueError: boom")
        assert store.has_result(ok.cell_id) and not store.has_result(bad.cell_id)
        rows = {r["cell_id"]: r for r in store.rows()}
        assert rows[ok.cell_id]["robust_accuracy"] == 0.25
        assert math.isnan(rows[ok.cell_id]["roc_auc"])
        assert rows[ok.cell_id]["delta"] == pytest.approx(25.5)
        assert rows[bad.cell_id]["error"] == "ValueError: boom"
        # replacing a failed cell with a success keeps one row
        store.put(bad, status="ok", metrics={"robust_accuracy": 0.5})
        assert store.count() == {"ok": 2}
    # metrics are REAL columns in SQLite, not strings
    db = sqlite3.connect(tmp_path / "s.sqlite")
    assert db.execute("SELECT typeof(value) FROM metrics WHERE name='robust_accuracy'"
                      ).fetchall() == [("real",), ("real",)]


def test_non_numeric_metric_rejected(tmp_path):
    with Store(tmp_path / "s.sqlite") as store, pytest.raises(TypeError, match="must be a number"):
        store.put(_cell(0.1), status="ok", metrics={"robust_accuracy": "0.5"})


def _examples(n, offset=0.0):
    import numpy as np

    return {"index": np.arange(n) * 3, "label": np.arange(n) % 2,
            "p_fake_clean": np.linspace(0, 1, n) + offset, "p_fake_adv": np.full(n, np.nan)}


def test_examples_and_gallery_round_trip_and_go_with_their_row(tmp_path):
    """Per-example arrays come back in order (NaN kept), gallery entries by rank with their
    PNG bytes; replacing the cell replaces both; a cell that stored none gives None / []."""
    import numpy as np

    entry = {"index": 6, "label": 1, "p_fake_clean": 0.9, "p_fake_adv": 0.1,
             "clean_png": b"\x89PNG-a", "adv_png": b"\x89PNG-b", "perturbation_png": b"c"}
    with Store(tmp_path / "s.sqlite") as store:
        cell, other = _cell(0.1), _cell(0.2)
        store.put(cell, status="ok", examples=_examples(5), gallery=[entry, entry | {"index": 9}])
        store.put(other, status="failed", error="boom")
        got = store.examples(cell.cell_id)
        np.testing.assert_array_equal(got["index"], [0, 3, 6, 9, 12])
        np.testing.assert_array_equal(got["label"], [0, 1, 0, 1, 0])
        np.testing.assert_allclose(got["p_fake_clean"], np.linspace(0, 1, 5))
        assert np.isnan(got["p_fake_adv"]).all()
        assert [g["index"] for g in store.gallery(cell.cell_id)] == [6, 9]
        assert store.gallery(cell.cell_id)[0]["clean_png"] == b"\x89PNG-a"
        assert store.examples(other.cell_id) is None and store.gallery(other.cell_id) == []
        store.put(cell, status="ok", examples=_examples(2, offset=0.5))
        assert len(store.examples(cell.cell_id)["index"]) == 2
        assert store.gallery(cell.cell_id) == []


def test_bad_store_files_are_refused_naming_the_file(tmp_path):
    """Not SQLite, truncated, another program's SQLite, a newer dfjax's schema, a folder:
    each a StoreError naming the path, before anything is written."""
    from dfjax.store import SCHEMA_VERSION, StoreError

    text = tmp_path / "notes.sqlite"
    text.write_text("this is not a database\n" * 50)
    good = tmp_path / "good.sqlite"
    with Store(good) as store:
        for eps in (0.1, 0.2, 0.3):
            store.put(_cell(eps), status="ok", metrics={"robust_accuracy": eps},
                      examples=_examples(200))
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:3000])
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE songs (title TEXT)").connection.commit()
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(good.read_bytes())
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    cases = {text: "not a usable SQLite", truncated: "SQLite", foreign: "not a dfjax store",
             newer: "newer dfjax", tmp_path: "is a directory"}
    for path, message in cases.items():
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(StoreError, match=message) as info:
            Store(path)
        assert str(path) in str(info.value)
        assert before is None or path.read_bytes() == before


def test_schema_1_store_is_upgraded_and_keeps_its_rows(tmp_path):
    """A store written before the examples/gallery tables existed opens, keeps its cells,
    and reports no per-example data for them."""
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        cell = _cell(0.1)
        store.put(cell, status="ok", metrics={"robust_accuracy": 0.5})
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE examples; DROP TABLE gallery; PRAGMA user_version = 0;")
    db.close()
    with Store(path) as store:
        assert store.rows()[0]["robust_accuracy"] == 0.5
        assert store.examples(cell.cell_id) is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_schema_2_store_is_upgraded_to_claims_and_keeps_its_rows(tmp_path):
    """A store written before claims existed (schema 2) opens, keeps its cells and
    examples, gains an empty claims table that works, and is marked SCHEMA_VERSION."""
    path = tmp_path / "v2.sqlite"
    cell = _cell(0.1)
    with Store(path) as store:
        store.put(cell, status="ok", metrics={"robust_accuracy": 0.5},
                  examples={"index": [3], "label": [1], "p_fake_clean": [0.9],
                            "p_fake_adv": [0.2]})
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE claims; PRAGMA user_version = 2;")
    db.close()
    with Store(path) as store:
        assert store.rows()[0]["robust_accuracy"] == 0.5
        assert store.examples(cell.cell_id)["index"].tolist() == [3]
        assert store.claims() == {}
        assert store.claim(_cell(0.2).cell_id, claim_owner())
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _live_other_owner() -> str:
    """A claim owner that is another process, alive on this host: pytest's parent."""
    ppid = os.getppid()
    return f"{socket.gethostname()}:{ppid}:{_process_start(ppid)}"


def _dead_owner() -> str:
    """The owner string a process on this host had before it ended."""
    child = subprocess.Popen(["sleep", "30"])
    owner = f"{socket.gethostname()}:{child.pid}:{_process_start(child.pid)}"
    child.kill()
    child.wait()
    return owner


def test_claim_is_held_against_a_live_owner_and_released_by_storing(tmp_path):
    """A cell claimed by a live other process cannot be claimed; its owner may renew it;
    storing the cell drops the claim and a stored 'ok' cell cannot be claimed at all."""
    cell, me, other = _cell(0.1), claim_owner(), _live_other_owner()
    with Store(tmp_path / "s.sqlite") as store:
        assert store.claim(cell.cell_id, other, ttl=60)
        assert not store.claim(cell.cell_id, me, ttl=60)
        assert store.claim(cell.cell_id, other, ttl=60)  # the owner renews its own claim
        assert store.claims()[cell.cell_id][0] == other
        store.put(cell, status="ok", metrics={"robust_accuracy": 0.5})
        assert store.claims() == {}
        assert not store.claim(cell.cell_id, me, ttl=60)


def test_a_failed_cell_or_an_older_row_the_plan_recomputes_can_be_claimed(tmp_path):
    """A 'failed' row does not block a claim; an 'ok' row written before `planned_at`
    (one the run chose to compute again) does not either, one written since does."""
    failed, stale = _cell(0.1), _cell(0.2)
    with Store(tmp_path / "s.sqlite") as store:
        store.put(failed, status="failed", error="ValueError: boom")
        store.put(stale, status="ok", metrics={"robust_accuracy": 0.5})
        written = store.rows(status="ok")[0]["created_at"]
        assert store.claim(failed.cell_id, claim_owner())
        assert not store.claim(stale.cell_id, claim_owner(), planned_at=written)
        assert store.claim(stale.cell_id, claim_owner(), planned_at=written + 1)


def test_claims_of_a_dead_process_or_a_reused_pid_are_taken_over(tmp_path):
    """A claim whose process ended is dead at once (its lease has not run out); so is one
    whose pid now belongs to another process (another start time)."""
    dead = _dead_owner()
    host, pid, _ = _live_other_owner().rsplit(":", 2)
    reused = f"{host}:{pid}:1"  # a live pid with another start time: not that process
    assert not claim_is_live(dead, expires_at=time.time() + 60)
    assert not claim_is_live(reused, expires_at=time.time() + 60)
    with Store(tmp_path / "s.sqlite") as store:
        for owner, cell in ((dead, _cell(0.1)), (reused, _cell(0.2))):
            assert store.claim(cell.cell_id, owner, ttl=60)
            assert store.claim(cell.cell_id, claim_owner(), ttl=60)
            assert store.claims()[cell.cell_id][0] == claim_owner()


def test_another_hosts_claim_holds_until_its_lease_expires_and_renew_extends_it(tmp_path):
    """A process on another host cannot be checked: its claim lives until expires_at;
    `renew` moves expires_at on, keeping it."""
    cell, remote = _cell(0.1), "elsewhere.example:4242:99"
    with Store(tmp_path / "s.sqlite") as store:
        assert store.claim(cell.cell_id, remote, ttl=-1)  # already expired
        assert store.renew(remote, ttl=60) == 1
        assert not store.claim(cell.cell_id, claim_owner())
        assert store.renew(remote, ttl=-1) == 1
        assert store.claim(cell.cell_id, claim_owner())


def test_release_drops_one_claim_or_all_of_an_owner(tmp_path):
    me, cells = claim_owner(), [_cell(e) for e in (0.1, 0.2, 0.3)]
    with Store(tmp_path / "s.sqlite") as store:
        for cell in cells:
            assert store.claim(cell.cell_id, me)
        store.release(me, cells[0].cell_id)
        assert set(store.claims()) == {cells[1].cell_id, cells[2].cell_id}
        store.release(me)
        assert store.claims() == {}


def test_heartbeat_renews_claims_while_it_runs(tmp_path):
    """ClaimHeartbeat pushes the owner's expires_at forward (every ttl/3) from its thread."""
    path, cell, me = tmp_path / "s.sqlite", _cell(0.1), claim_owner()
    with Store(path) as store:
        store.claim(cell.cell_id, me, ttl=0.3)
        first = store.claims()[cell.cell_id][1]
        with ClaimHeartbeat(path, me, ttl=0.3):
            deadline = time.monotonic() + 30  # a loaded machine may be slow to schedule it
            while store.claims()[cell.cell_id][1] == first and time.monotonic() < deadline:
                time.sleep(0.05)
        assert store.claims()[cell.cell_id][1] > first


_CLAIMER = """
import sys
from dfjax.store import Store, claim_owner
ids = sys.argv[2].split(",")
with Store(sys.argv[1]) as store:
    owner = claim_owner()
    print(",".join(i for i in ids if store.claim(i, owner, ttl=600)), flush=True)
    sys.stdin.read()  # alive until the test has both shares: a dead owner's claims lapse
"""


def test_two_processes_claiming_the_same_cells_each_get_a_disjoint_share(tmp_path):
    """Two processes race to claim the same 60 cells on one store: every cell is claimed
    by exactly one of them, and neither fails on the other's lock."""
    path, ids = tmp_path / "s.sqlite", [f"cell{i:03d}" for i in range(60)]
    Store(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMER, str(path), ",".join(ids)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    lines = [p.stdout.readline() for p in procs]  # both alive, holding their claims
    outputs = [p.communicate(input="", timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    shares = [set(filter(None, line.strip().split(","))) for line in lines]
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(ids)


def test_closed_store_leaves_no_wal_files_and_a_rollback_journal(tmp_path):
    """While open the store journals in WAL mode (two runs read and write at once); when
    its last user closes it, no -wal or -shm file remains and the file is back in rollback
    mode: one self-contained file to copy or commit. A second user keeps WAL until it
    closes."""
    path = tmp_path / "s.sqlite"
    first, second = Store(path), Store(path)
    first.put(_cell(0.1), status="ok", metrics={"robust_accuracy": 0.5})
    assert first._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    first.close()
    assert second.count() == {"ok": 1}  # still usable by the other user
    second.put(_cell(0.2), status="ok", metrics={"robust_accuracy": 0.25})
    second.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 2


_KILLED_PUT = """
import sys
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.store import Store
cell = Cell(dataset=DatasetSpec(name="synthetic_faces"), model=ModelSpec(name="cnn7"),
            training=TrainSpec(), defence=DefenceSpec(), attack=AttackSpec(name="fgsm", eps=0.1),
            n_eval=4, seed=0)
with Store(sys.argv[1]) as store:
    store.put(cell, status="ok", metrics={"robust_accuracy": 0.5},
              examples={"index": [0, 1], "label": [0, 1], "p_fake_clean": [0.1, 0.9],
                        "p_fake_adv": [0.6, 0.4]})
"""


def test_a_process_killed_inside_put_leaves_no_part_of_the_cell(tmp_path):
    """SIGKILL after a cell's row, metrics and examples are written but before the commit:
    the reopened store holds none of them and passes SQLite's integrity check."""
    path = tmp_path / "s.sqlite"
    Store(path).close()
    env = {**os.environ, "DFJAX_TEST_KILL_AFTER": "store.put:1"}
    done = subprocess.run([sys.executable, "-c", _KILLED_PUT, str(path)], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with Store(path) as store:
        assert store.rows() == [] and store.count() == {}
        assert store._db.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 0
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_store_in_an_unwritable_folder_is_refused_naming_it(tmp_path):
    """A store path whose folder cannot exist (under a regular file) is a StoreError naming
    the path, before any file is made."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    path = blocker / "runs" / "results.sqlite"
    with pytest.raises(StoreError, match="folder") as info:
        Store(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the variant under a "
                    "regular file (above) covers root")
def test_a_store_in_a_read_only_folder_is_refused_naming_it(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="not writable") as info:
            Store(folder / "results.sqlite")
        assert str(folder) in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)
