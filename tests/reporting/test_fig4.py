"""The paper's Fig. 4 (the GAN's D and G losses per epoch) in the report: drawn from the
store, one PNG per gan_fakes dataset, from the history the rows' provenance carries. No
training: the env is made by `provenance` from a dataset info like gan_fakes' and stored
with Store.put."""

import dataclasses
import json

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.reporting.plots import plot_gan_losses
from dfjax.reporting.report import write_report
from dfjax.runner.environment import provenance
from dfjax.store import Store

HISTORY = [{"epoch": 1, "d_loss": 1.2, "g_loss": 0.9, "d_real_accuracy": 0.6, "seconds": 3.0},
           {"epoch": 2, "d_loss": 0.8, "g_loss": 1.6, "d_real_accuracy": 0.8, "seconds": 2.0}]
METRICS = {"robust_accuracy": 0.5, "clean_accuracy": 0.9,
           **{f"adv_true_class_probability_{s}": 0.4 for s in ("mean", "median", "min")}}


@dataclasses.dataclass
class _Detector:  # what provenance reads of a Detector
    from_cache: bool = False
    trained_at: float | None = 0.0


@dataclasses.dataclass
class _Splits:  # what provenance reads of DatasetSplits
    info: dict


def _cell(dataset: DatasetSpec, eps: float, model: str = "cnn7") -> Cell:
    return Cell(dataset=dataset, model=ModelSpec(name=model), training=TrainSpec(),
                defence=DefenceSpec(), attack=AttackSpec(name="fgsm", eps=eps), n_eval=8,
                seed=0)


def _store(path, datasets):
    """A store with two fgsm cells per dataset; gan_fakes rows carry a GAN history (each
    dataset its own, its losses scaled by its image size), the others none."""
    store = Store(path)
    for dataset in datasets:
        info = {"version": "1.0.0", "report": {}}
        if dataset.name == "gan_fakes":
            scale = dataset.image_size / 32
            info["report"]["gan"] = {"history": [
                {**h, "d_loss": h["d_loss"] * scale} for h in HISTORY]}
        env = provenance(_Splits(info), _Detector(), TrainSpec())
        for eps in (0.0, 8 / 255):
            store.put(_cell(dataset, eps), status="ok", metrics=METRICS, env=env)
    return store


GAN_32 = DatasetSpec(name="gan_fakes", image_size=32, num_examples=400)
GAN_64 = DatasetSpec(name="gan_fakes", image_size=64, num_examples=400)
FACES = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=400)


def test_provenance_carries_the_gan_history_of_a_gan_dataset_only():
    """env dataset_gan_history: the epochs' D and G losses as JSON; absent without a GAN."""
    env = provenance(_Splits({"report": {"gan": {"history": HISTORY}}}), _Detector())
    assert json.loads(env["dataset_gan_history"]) == [
        {"epoch": h["epoch"], "d_loss": h["d_loss"], "g_loss": h["g_loss"]} for h in HISTORY]
    assert "dataset_gan_history" not in provenance(_Splits({"report": {}}), _Detector())


def test_one_figure_per_gan_dataset_in_the_store(tmp_path):
    """Two gan_fakes specs (32 and 64 px) and synthetic_faces: exactly two PNGs, named by
    dataset, size and examples; different histories give different pictures."""
    with _store(tmp_path / "s.sqlite", (GAN_32, GAN_64, FACES)) as store:
        written = plot_gan_losses(store.rows(), tmp_path)
    assert sorted(p.name for p in written) == ["fig4_gan_fakes_32px_n400.png",
                                               "fig4_gan_fakes_64px_n400.png"]
    pictures = [p.read_bytes() for p in written]
    assert all(b.startswith(b"\x89PNG") for b in pictures)
    assert pictures[0] != pictures[1]


def test_no_gan_dataset_no_figure(tmp_path):
    with _store(tmp_path / "s.sqlite", (FACES,)) as store:
        assert plot_gan_losses(store.rows(), tmp_path) == []


def test_the_report_writes_fig4_and_again_the_same_bytes(tmp_path):
    """`dfjax report` (write_report) lists the Fig. 4 file; written twice, identical."""
    with _store(tmp_path / "s.sqlite", (GAN_32,)) as store:
        first = write_report(store, tmp_path / "a")
        second = write_report(store, tmp_path / "b")
    figures = [p for p in first if p.name.startswith("fig4_")]
    assert [p.name for p in figures] == ["fig4_gan_fakes_32px_n400.png"]
    assert figures[0].read_bytes() == (tmp_path / "b" / figures[0].name).read_bytes()
    assert len(first) == len(second)
