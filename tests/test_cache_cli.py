"""`dfjax cache list|clear`: every cache entry with its state; clearing removes only what
it names, only inside the cache folders, never the manual downloads."""

import json

import numpy as np
import pytest

from dfjax.caches import CacheEntry, clear_caches
from dfjax.cli import main
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data import load_dataset
from dfjax.data._tfds import FINGERPRINT_FILE
from dfjax.training.checkpoints import save_checkpoint
from dfjax.training.detectors import training_fingerprint

CURRENT = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=40)
STALE = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=40, seed=1)


def _cell(seed):
    return Cell(dataset=CURRENT, model=ModelSpec(name="cnn7_tiny"),
                training=TrainSpec(epochs=1, seed=seed), defence=DefenceSpec(),
                attack=AttackSpec(name="noise"), n_eval=8, seed=0)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A data dir with a current and a stale copy and a manual download; a checkpoint
    dir with a current and a stale detector; an XLA dir with two programs."""
    root = tmp_path_factory.mktemp("caches")
    data, ckpt, xla = root / "data", root / "ckpt", root / "xla"
    for spec in (CURRENT, STALE):
        load_dataset(spec, data_dir=data)
    (data / STALE.name / STALE.digest() / FINGERPRINT_FILE).write_text(
        json.dumps({"fingerprint": "0" * 16}))
    (data / "manual" / "dfdc").mkdir(parents=True)
    (data / "manual" / "dfdc" / "video.mp4").write_bytes(b"download")
    for cell, fingerprint in ((_cell(0), training_fingerprint(_cell(0))), (_cell(1), "0" * 16)):
        save_checkpoint(ckpt, cell.detector_id, {"params": {"w": np.zeros(3, np.float32)}},
                        {"history": [], "train_seconds": 1.0, "trained_at": 0.0,
                         "fingerprint": fingerprint, "dataset": cell.dataset.to_dict(),
                         "model": cell.model.to_dict(), "training": cell.training.to_dict()})
    xla.mkdir()
    for name in ("program_a", "program_b"):
        (xla / name).write_bytes(b"x" * 100)
    return root


def _dirs(root):
    return ["--data-dir", str(root / "data"), "--checkpoint-dir", str(root / "ckpt"),
            "--compile-cache", str(root / "xla")]


def _copy(tmp_path, caches):
    import shutil

    shutil.copytree(caches, tmp_path / "c")
    return tmp_path / "c"


def test_list_shows_each_entry_and_its_state(caches, capsys):
    assert main(["cache", "list", *_dirs(caches)]) == 0
    out = capsys.readouterr().out
    datasets = [line for line in out.splitlines() if "synthetic_faces 32px" in line]
    assert len(datasets) == 2
    assert sum(line.split()[0] == "current" for line in datasets) == 1
    assert sum(line.split()[0] == "stale" for line in datasets) == 1
    detectors = [line for line in out.splitlines() if "cnn7_tiny" in line]
    assert sorted(line.split()[0] for line in detectors) == ["current", "stale"]
    assert "xla in" in out and "2 entries" in out
    assert "manual" not in out


def test_clear_needs_a_kind(caches, capsys):
    assert main(["cache", "clear", *_dirs(caches)]) == 2
    assert "say what to clear" in capsys.readouterr().err


def test_clear_stale_detectors_removes_only_those(tmp_path, caches):
    root = _copy(tmp_path, caches)
    stale_id, current_id = _cell(1).detector_id, _cell(0).detector_id
    assert main(["cache", "clear", "--detectors", "--stale", *_dirs(root)]) == 0
    assert sorted(p.name for p in (root / "ckpt").iterdir()) == [
        f"{current_id}.json", f"{current_id}.msgpack"]
    assert stale_id not in " ".join(p.name for p in (root / "ckpt").iterdir())
    assert len(list((root / "data" / CURRENT.name).glob("*/*/*/dataset_info.json"))) == 2


def test_clear_all_keeps_the_manual_downloads_and_what_lies_outside(tmp_path, caches):
    root = _copy(tmp_path, caches)
    (root / "beside.txt").write_text("not a cache")
    assert main(["cache", "clear", "--all", *_dirs(root)]) == 0
    assert (root / "data" / "manual" / "dfdc" / "video.mp4").read_bytes() == b"download"
    assert (root / "beside.txt").exists() and (root / "xla").is_dir()
    assert not list((root / "data" / CURRENT.name).glob("*/*/*/dataset_info.json"))
    assert not list((root / "ckpt").iterdir()) and not list((root / "xla").iterdir())


def test_dry_run_removes_nothing(tmp_path, caches, capsys):
    root = _copy(tmp_path, caches)
    assert main(["cache", "clear", "--xla", "--dry-run", *_dirs(root)]) == 0
    assert capsys.readouterr().out.count("would remove xla") == 1
    assert len(list((root / "xla").iterdir())) == 2


def test_clear_refuses_a_path_outside_its_cache_before_removing_anything(tmp_path):
    root, outside = tmp_path / "ckpt", tmp_path / "precious.txt"
    root.mkdir()
    inside = root / "a.json"
    inside.write_text("{}")
    outside.write_text("keep")
    entries = [CacheEntry("detectors", "a", "stale", "", 2, (inside,)),
               CacheEntry("detectors", "b", "stale", "", 4, (root / ".." / "precious.txt",))]
    with pytest.raises(ValueError, match="not inside the detectors cache"):
        clear_caches(entries, roots={"detectors": root})
    assert inside.exists() and outside.read_text() == "keep"
    with pytest.raises(ValueError, match="not inside"):
        clear_caches([CacheEntry("detectors", "r", "stale", "", 0, (root,))],
                     roots={"detectors": root})
    assert root.is_dir()


def test_clear_removes_a_link_not_its_target(tmp_path):
    root, target = tmp_path / "xla", tmp_path / "target.bin"
    root.mkdir()
    target.write_bytes(b"keep")
    (root / "link").symlink_to(target)
    clear_caches([CacheEntry("xla", "x", "-", "", 0, (root / "link",))], roots={"xla": root})
    assert not (root / "link").is_symlink() and target.read_bytes() == b"keep"
