"""The paper's full set (Dhese et al.): the custom CNNs, a ResNet50 (fine-tuned from
ImageNet weights the user has, else trained from scratch) and the GAN's discriminator, on
every dataset the paper used, attacked with gradient-sign and iterated steps over delta in
0..25 (Table I's range).

Datasets: `synthetic_faces` (generated), `gan_fakes` (real faces against a DCGAN trained
on them: the paper's GAN-made fakes, its losses drawn as Fig. 4), `self_blended`
(self-blended fakes of the same faces) and the paper's real sets `real_vs_fake_140k`,
`dfdc`, `covid19_xray` -- these run where they are prepared (`dfjax data prepare NAME`);
elsewhere `dfjax run` names each once and runs the rest.

Without weights ResNet50 trains from scratch like the other models. With
`get_config(resnet50_weights=FILE)` (a torchvision ImageNet state dict, .pth or .npz; see
docs/pretrained.md) it moves to an `extra` sub-matrix of its own, fine-tuned from FILE
(`init_from`) at FINE_TUNING_LEARNING_RATE. The file is checked against ResNet50 here,
before any work. The report's provenance says which ("init_from FILE (sha256 ...)" or
"from scratch"). From the command line, a three-line config file passes the path (README,
"The paper end to end").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps

DELTAS = (0, 1, 2, 4, 8, 16, 25)
GENERATED_DATASETS = ("synthetic_faces", "gan_fakes", "self_blended")
PAPER_DATASETS = ("real_vs_fake_140k", "dfdc", "covid19_xray")
IMAGE_SIZE = 64
TRAINING = TrainSpec(recipe="standard", epochs=8, batch_size=64, learning_rate=1e-3)
FINE_TUNING_LEARNING_RATE = 1e-4  # Adam on a pretrained body: ten times lower


def resnet50_training(weights: str | Path | None) -> TrainSpec:
    """The ResNet50's training: TRAINING from scratch, or fine-tuning from `weights`
    (checked against ResNet50 now: StateDictError naming the file otherwise)."""
    if weights is None:
        return TRAINING
    from dfjax.models import build_model
    from dfjax.models.pretrained import check_weights_for_model

    path = Path(weights).expanduser().resolve()
    check_weights_for_model(path, build_model(ModelSpec(name="resnet50")),
                            (IMAGE_SIZE, IMAGE_SIZE, 3), model_name="resnet50")
    return dataclasses.replace(TRAINING, learning_rate=FINE_TUNING_LEARNING_RATE,
                               options={"init_from": str(path)})


def get_config(resnet50_weights: str | Path | None = None) -> MatrixConfig:
    """The paper's matrix; `resnet50_weights`: an ImageNet ResNet50 state dict to
    fine-tune from (None: ResNet50 trains from scratch)."""
    datasets = [DatasetSpec(name=n, image_size=IMAGE_SIZE, num_examples=10_000)
                for n in GENERATED_DATASETS]
    datasets += [DatasetSpec(name=n, image_size=IMAGE_SIZE, num_examples=20_000)
                 for n in PAPER_DATASETS]
    config = MatrixConfig(
        name="paper",
        datasets=tuple(datasets),
        models=tuple(ModelSpec(name=n) for n in ("cnn7", "cnn6", "resnet50", "gan_disc")),
        trainings=(TRAINING,),
        attacks=(
            AttackSweep(name="fgsm"),
            AttackSweep(name="pgd", options={"num_steps": 10}),
        ),
        eps_values=delta_to_eps(*DELTAS),
        n_eval=512,
        eval_batch_size=128,
        seed=0,
    )
    if resnet50_weights is None:
        return config
    # fine-tuned: ResNet50 leaves the main matrix for a sub-matrix with its own training
    fine_tuned = dataclasses.replace(config, name="paper/resnet50",
                                     models=(ModelSpec(name="resnet50"),),
                                     trainings=(resnet50_training(resnet50_weights),))
    return dataclasses.replace(
        config, models=tuple(m for m in config.models if m.name != "resnet50"),
        extra=(fine_tuned,))
