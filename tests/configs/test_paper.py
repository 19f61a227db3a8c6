"""The `paper` matrix: the paper's models and datasets (GAN-made and self-blended fakes,
the COVID-19 X-rays among them), Table I's budgets; ResNet50 fine-tuned from ImageNet
weights only when the user names them."""

import importlib

from dfjax.configs import paper
from dfjax.runner import expand


def test_paper_has_the_paper_s_datasets_models_and_budgets():
    config = paper.get_config()
    assert [d.name for d in config.datasets] == [
        "synthetic_faces", "gan_fakes", "self_blended", "real_vs_fake_140k", "dfdc",
        "covid19_xray"]
    assert {d.image_size for d in config.datasets} == {64}
    assert [round(e * 255) for e in config.eps_values] == [0, 1, 2, 4, 8, 16, 25]
    assert [a.name for a in config.attacks] == ["fgsm", "pgd"]


def test_paper_without_weights_trains_every_model_from_scratch():
    config = paper.get_config()
    assert config.extra == ()
    assert {m.name for m in config.models} == {"cnn7", "cnn6", "resnet50", "gan_disc"}
    assert {c.training.option("init_from") for c in expand(config)} == {None}


def test_paper_with_weights_fine_tunes_resnet50_alone(tmp_path, monkeypatch):
    """With weights (the architecture check stubbed: a real ResNet50 file is 100 MB; the
    file is only a zip header), only ResNet50's cells start from them, at the fine-tuning
    learning rate; every other cell is one of the plain paper's."""
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"PK\x03\x04 stands in for torch's zip")
    checked = []
    monkeypatch.setattr("dfjax.models.pretrained.check_weights_for_model",
                        lambda path, model, shape, **kw: checked.append((path, kw)))
    # validation's own architecture check likewise (dfjax.runner.expand the module)
    monkeypatch.setattr(importlib.import_module("dfjax.runner.expand"), "_weights_mismatch",
                        lambda *a: None)
    config = paper.get_config(resnet50_weights=weights)
    assert checked == [(weights.resolve(), {"model_name": "resnet50"})]
    cells = expand(config)
    tuned = [c for c in cells if c.model.name == "resnet50"]
    assert tuned and {c.training.option("init_from") for c in tuned} == {str(weights.resolve())}
    assert {c.training.learning_rate for c in tuned} == {paper.FINE_TUNING_LEARNING_RATE}
    others = [c for c in cells if c.model.name != "resnet50"]
    plain = [c for c in expand(paper.get_config()) if c.model.name != "resnet50"]
    assert [c.cell_id for c in others] == [c.cell_id for c in plain]
    assert len(cells) == len(plain) + len(tuned) == len(expand(paper.get_config()))
