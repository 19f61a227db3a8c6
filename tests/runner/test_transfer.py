"""Transfer attacks (dfjax.attacks.transfer through the runner): crafted on a source
detector, scored on every target of the same dataset; a self-transfer is the white-box
cell; bad sources fail before any work."""

import dataclasses
import json

import numpy as np
import pytest

from dfjax.config import (
    AttackSweep,
    Cell,
    DatasetSpec,
    DefenceSpec,
    MatrixConfig,
    ModelSpec,
    SourceSpec,
    TrainSpec,
    delta_to_eps,
)
from dfjax.runner import expand, run_matrix
from dfjax.runner.expand import ConfigError, check_cells
from dfjax.store import Store

DATASET = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=400)
TRAINING = TrainSpec(recipe="standard", epochs=2, batch_size=32)
PGD = AttackSweep(name="pgd", options={"num_steps": 3})


def tiny_config(**changes) -> MatrixConfig:
    """Two tiny detectors (cnn7_tiny, cnn6_tiny) on one small dataset, PGD-3 at delta 8
    white-box and as a transfer attack: 2 white-box cells and 4 transfer cells."""
    config = MatrixConfig(
        name="transfer_test", datasets=(DATASET,),
        models=(ModelSpec(name="cnn7_tiny"), ModelSpec(name="cnn6_tiny")),
        trainings=(TRAINING,), attacks=(PGD,), transfer=(PGD,), eps_values=delta_to_eps(8),
        n_eval=64, eval_batch_size=32, seed=0)
    return dataclasses.replace(config, **changes)


def _source(row) -> dict | None:
    return json.loads(row["spec_json"]).get("source")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """(store path, {(source model or None, target model): row}) of tiny_config, run once."""
    base = tmp_path_factory.getbasetemp() / "shared_cache"  # as tests/runner/test_run_matrix
    path = tmp_path_factory.mktemp("transfer") / "store.sqlite"
    with Store(path) as store:
        summary = run_matrix(tiny_config(), store, progress=False, data_dir=base / "data",
                             checkpoint_dir=base / "ckpt")
        assert summary.failed == 0, summary.failures
        rows = {}
        for row in store.rows():
            source = _source(row)
            rows[(source and source["model"]["name"], row["model"])] = row
    return path, rows


def test_transfer_to_itself_equals_the_white_box_cell(stored):
    """Transfer from a detector to itself crafts with the white-box cell's key on the same
    examples: every metric the white-box cell has (but its sanity checks and the kind of
    evaluation) is equal, and so are the per-example probabilities and the gallery."""
    path, rows = stored
    with Store(path) as store:
        for model in ("cnn7_tiny", "cnn6_tiny"):
            white, self_transfer = rows[(None, model)], rows[(model, model)]
            shared = {k for k in white if k.endswith(("accuracy", "rate", "_max", "_mean",
                                                      "_median", "_min", "_auc", "loss",
                                                      "precision", "recall", "f1"))}
            shared -= {k for k in shared if k.startswith("sanity_")}
            assert "robust_accuracy" in shared and "adv_log_loss" in shared and "l2_mean" in shared
            for name in sorted(shared):
                assert self_transfer[name] == white[name], (model, name)
            assert self_transfer["transfer"] == 1.0 and self_transfer["adaptive"] == 0.0
            white_examples = store.examples(white["cell_id"])
            transfer_examples = store.examples(self_transfer["cell_id"])
            for key, values in white_examples.items():
                np.testing.assert_array_equal(transfer_examples[key], values, err_msg=key)
            assert store.gallery(self_transfer["cell_id"]) == store.gallery(white["cell_id"])


def test_transfer_from_another_detector_names_its_source_and_is_no_stronger(stored):
    """An off-diagonal transfer row names its source in its spec and extra; its robust
    accuracy on the target is at least the target's white-box robust accuracy (white-box
    PGD on the target itself is the stronger attack)."""
    _, rows = stored
    for source, target in (("cnn7_tiny", "cnn6_tiny"), ("cnn6_tiny", "cnn7_tiny")):
        row = rows[(source, target)]
        spec = _source(row)
        assert spec["model"]["name"] == source and spec["dataset"] == json.loads(
            row["spec_json"])["dataset"]
        assert json.loads(row["extra_json"])["transfer"]["source"] == f"{source}/standard"
        assert row["robust_accuracy"] >= rows[(None, target)]["robust_accuracy"]
        assert not any(name.startswith("sanity_") for name in row)


def test_each_source_crafts_once_for_all_its_targets(stored):
    """The crafted examples are memoised per source: of the transfer rows of one source,
    exactly one crafted them."""
    _, rows = stored
    for source in ("cnn7_tiny", "cnn6_tiny"):
        crafted = [json.loads(row["extra_json"])["transfer"]["crafted_in_this_cell"]
                   for (s, _), row in rows.items() if s == source]
        assert sorted(crafted) == [False, True]


def test_expand_makes_every_ordered_pair_on_each_dataset():
    """With 2 datasets x 2 models x 1 training (2 detectors a dataset), 2 defences and 2
    transfer budgets: 2 x 2^2 pairs x 2 defences x 2 budgets = 32 transfer cells, sources
    always on the target's dataset, ids distinct from the white-box cells'; `--only`
    filters on the target."""
    other = dataclasses.replace(DATASET, image_size=16)
    config = tiny_config(datasets=(DATASET, other),
                         defences=(DefenceSpec(), DefenceSpec(name="jpeg")),
                         transfer=(dataclasses.replace(PGD, eps_values=delta_to_eps(4, 8)),))
    cells = expand(config)
    transfer = [c for c in cells if c.source is not None]
    white = [c for c in cells if c.source is None]
    assert len(white) == 2 * 2 * 2 * 1 and len(transfer) == 32
    assert all(c.source.dataset == c.dataset for c in transfer)
    pairs = {(c.dataset.image_size, c.source.model.name, c.model.name) for c in transfer}
    assert len(pairs) == 2 * 4
    assert not {c.cell_id for c in transfer} & {c.cell_id for c in white}
    assert len({c.cell_id for c in cells}) == len(cells)
    only = expand(config, {"model": ["cnn6_tiny"]})
    assert {c.model.name for c in only} == {"cnn6_tiny"}
    assert {c.source.model.name for c in only if c.source} == {"cnn7_tiny", "cnn6_tiny"}


def test_transfer_sweeps_are_validated_like_attacks():
    with pytest.raises(ConfigError, match="no_such_attack"):
        expand(tiny_config(transfer=(AttackSweep(name="no_such_attack"),)))
    with pytest.raises(ConfigError, match="transfer must be a tuple of AttackSweeps"):
        expand(tiny_config(transfer=("pgd",)))


def _cross_dataset_cell() -> Cell:
    other = dataclasses.replace(DATASET, name="covid19_xray")
    return Cell(dataset=DATASET, model=ModelSpec(name="cnn7_tiny"), training=TRAINING,
                defence=DefenceSpec(), attack=expand(tiny_config())[0].attack, n_eval=64,
                seed=0, eval_batch_size=32,
                source=SourceSpec(dataset=other, model=ModelSpec(name="cnn6_tiny"),
                                  training=TRAINING))


def test_a_source_on_another_dataset_fails_before_any_data_loads(tmp_path, monkeypatch):
    """A hand-made transfer cell whose source is trained on another dataset: check_cells
    names both datasets, and run_matrix (through plan) raises it before any data folder
    or checkpoint is made and before anything is stored."""
    import dfjax.runner.local as local

    cell = _cross_dataset_cell()
    with pytest.raises(ConfigError, match=r"cnn6_tiny/standard is trained on dataset "
                                          r"covid19_xray .*the target on synthetic_faces"):
        check_cells([cell])
    monkeypatch.setattr(local, "expand", lambda config, only=None: [cell])
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ConfigError, match="same dataset"):
            run_matrix(tiny_config(), store, progress=False, data_dir=tmp_path / "data",
                       checkpoint_dir=tmp_path / "ckpt")
        assert store.rows() == []
    assert not (tmp_path / "data").exists() and not (tmp_path / "ckpt").exists()
