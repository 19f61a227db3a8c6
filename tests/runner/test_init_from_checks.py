"""Pretrained weights for fine-tuning (`init_from`), refused before any work when they
cannot serve: a missing file, a state dict of another architecture (for any model, and for
the paper's ResNet50); the provenance says where a detector's weights began."""

import hashlib

import numpy as np
import pytest

from dfjax.cli import main
from dfjax.config import ModelSpec, TrainSpec
from dfjax.configs import paper
from dfjax.models import build_model
from dfjax.models.pretrained import StateDictError, check_weights_for_model
from dfjax.runner.environment import initialisation
from tests.models.test_pretrained import fake_torchvision_resnet50


def fake_torchvision_resnet18(rng, stages=(1, 1), width=4, classes=10):
    """A state dict in torchvision's ResNet-18 names (basic blocks: conv1/conv2 3x3, no
    conv3), random values."""
    sd = {}

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = rng.normal(0, 0.1, (cout, cin, k, k))

    def bn(name, c):
        sd.update({f"{name}.weight": np.ones(c), f"{name}.bias": np.zeros(c),
                   f"{name}.running_mean": np.zeros(c), f"{name}.running_var": np.ones(c)})

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for i, blocks in enumerate(stages):
        planes = width * 2**i
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            conv(f"{p}.conv1", planes, cin, 3)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            if j == 0 and i > 0:
                conv(f"{p}.downsample.0", planes, cin, 1)
                bn(f"{p}.downsample.1", planes)
            cin = planes
    sd["fc.weight"] = rng.normal(0, 0.1, (classes, cin))
    sd["fc.bias"] = np.zeros(classes)
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


@pytest.fixture()
def resnet18_npz(tmp_path):
    path = tmp_path / "resnet18_imagenet.npz"
    np.savez(path, **fake_torchvision_resnet18(np.random.default_rng(0)))
    return path


@pytest.fixture()
def resnet50_tiny_npz(tmp_path):
    path = tmp_path / "resnet50_tiny.npz"
    np.savez(path, **fake_torchvision_resnet50(np.random.default_rng(0)))
    return path


def test_a_missing_init_from_file_stops_dfjax_run_before_any_work(tmp_path, capsys):
    """`dfjax run --set training.options={'init_from': MISSING}`: exit 2, the error names
    the file and says it does not exist; no store, no data, no checkpoint is made."""
    missing = tmp_path / "nowhere" / "resnet50.pth"
    argv = ["run", "--config", "smoke", "--no-progress", "--store", str(tmp_path / "s.sqlite"),
            "--data-dir", str(tmp_path / "d"), "--checkpoint-dir", str(tmp_path / "c"),
            "--set", f"training.options={{'init_from': '{missing}'}}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"init_from {missing}: no such file" in err
    assert not any(p.exists() for p in (tmp_path / "s.sqlite", tmp_path / "d", tmp_path / "c"))


def test_weights_of_the_model_s_architecture_pass_the_check(resnet50_tiny_npz):
    """The check is no blanket refusal: a ResNet-50-shaped state dict fits resnet50_tiny."""
    model = build_model(ModelSpec(name="resnet50_tiny"))
    check_weights_for_model(resnet50_tiny_npz, model, (32, 32, 3))


def test_a_resnet18_state_dict_is_refused_for_a_resnet50_naming_the_file(resnet18_npz):
    """Basic-block weights for a bottleneck model: StateDictError naming the file, the
    model, and 'wrong architecture' -- from shapes alone, no weight computed."""
    model = build_model(ModelSpec(name="resnet50_tiny"))
    with pytest.raises(StateDictError, match=rf"{resnet18_npz}: only \d+ of \d+ arrays match"
                       r".*wrong architecture\? \(checked against model resnet50_tiny\)"):
        check_weights_for_model(resnet18_npz, model, (32, 32, 3), model_name="resnet50_tiny")


def test_paper_refuses_resnet18_weights_for_its_resnet50(resnet18_npz):
    with pytest.raises(StateDictError, match=rf"{resnet18_npz}: .*wrong architecture.*resnet50"):
        paper.get_config(resnet50_weights=resnet18_npz)


def test_dfjax_run_with_a_paper_config_file_naming_wrong_weights_stops_before_work(
        tmp_path, resnet18_npz, capsys):
    """The README's route (a config file passing resnet50_weights) with a ResNet-18 file:
    exit 2, the error names the file; nothing is written."""
    config_file = tmp_path / "paper_imagenet.py"
    config_file.write_text("from dfjax.configs import paper\n\n\ndef get_config():\n"
                           f"    return paper.get_config(resnet50_weights={str(resnet18_npz)!r})\n")
    argv = ["run", "--config", str(config_file), "--no-progress",
            "--store", str(tmp_path / "s.sqlite"), "--data-dir", str(tmp_path / "d"),
            "--checkpoint-dir", str(tmp_path / "c")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(resnet18_npz) in err and "wrong architecture" in err
    assert not any(p.exists() for p in (tmp_path / "s.sqlite", tmp_path / "d", tmp_path / "c"))


def test_provenance_names_the_weights_file_and_its_sha256(resnet18_npz):
    digest = hashlib.sha256(resnet18_npz.read_bytes()).hexdigest()[:16]
    spec = TrainSpec(options={"init_from": str(resnet18_npz)})
    assert initialisation(spec) == f"init_from {resnet18_npz} (sha256 {digest})"
    assert initialisation(TrainSpec()) == "from scratch"
    assert initialisation(TrainSpec(recipe="pgd_at", options={"warm_start_epochs": 2})) == \
        "warm start: standard, 2 epochs"
