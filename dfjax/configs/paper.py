"""The paper's full set (Dhese et al.): the custom CNNs, a fine-tuned ResNet50 and the
GAN's discriminator, on every dataset the paper used that is registered, attacked with
gradient-sign and iterated steps over delta in 0..25 (Table I's range).

The real datasets (real_vs_fake_140k, dfdc, covid19_xray) join only when
`dfjax.data.DATASETS` has them at import time; synthetic_faces always.
"""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps
from dfjax.data import DATASETS

DELTAS = (0, 1, 2, 4, 8, 16, 25)
PAPER_DATASETS = ("real_vs_fake_140k", "dfdc", "covid19_xray")


def get_config() -> MatrixConfig:
    datasets = [DatasetSpec(name="synthetic_faces", image_size=64, num_examples=10_000)]
    datasets += [DatasetSpec(name=n, image_size=64, num_examples=20_000)
                 for n in PAPER_DATASETS if n in DATASETS]
    return MatrixConfig(
        name="paper",
        datasets=tuple(datasets),
        models=(ModelSpec(name="cnn7"), ModelSpec(name="cnn6"), ModelSpec(name="resnet50"),
                ModelSpec(name="gan_disc")),
        trainings=(TrainSpec(recipe="standard", epochs=8, batch_size=64, learning_rate=1e-3),),
        attacks=(
            AttackSweep(name="fgsm"),
            AttackSweep(name="pgd", options={"num_steps": 10}),
        ),
        eps_values=delta_to_eps(*DELTAS),
        n_eval=512,
        eval_batch_size=128,
        seed=0,
    )
