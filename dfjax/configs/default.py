"""The default matrix `run_all.py` runs, sized for <= 10 minutes on a 2-core CPU:

synthetic_faces (64x64, 10,000 images) x {cnn7, cnn6, meso4} x {standard,
pgd_at} x {noise, fgsm, pgd-10} x delta in {0, 1, 2, 4, 8, 16, 25}/255 (0-25 covers
the paper's Table I), on 256 test images.

`pgd_at` here is adversarial fine-tuning: it starts from the `standard` detector
(shared through the checkpoint cache) and trains 2 epochs on PGD-2 examples at
eps = 1/255. On this data PGD-AT at 2/255 and above collapses every detector to a
constant prediction (measured: cnn7 clean 0.52 = robust at 2/255 fine-tuning; 0.50 at
8/255 from scratch): the artefacts it can learn are erasable by such a perturbation.
"""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps

DELTAS = (0, 1, 2, 4, 8, 16, 25)
STANDARD_EPOCHS = 6


def get_config() -> MatrixConfig:
    return MatrixConfig(
        name="default",
        datasets=(DatasetSpec(name="synthetic_faces", image_size=64, num_examples=10_000),),
        models=(ModelSpec(name="cnn7"), ModelSpec(name="cnn6"), ModelSpec(name="meso4")),
        trainings=(
            TrainSpec(recipe="standard", epochs=STANDARD_EPOCHS),
            TrainSpec(recipe="pgd_at", epochs=2,
                      options={"eps": 1 / 255, "steps": 2,
                               "warm_start_epochs": STANDARD_EPOCHS}),
        ),
        attacks=(
            AttackSweep(name="noise"),
            AttackSweep(name="fgsm"),
            AttackSweep(name="pgd", options={"num_steps": 10}),
        ),
        eps_values=delta_to_eps(*DELTAS),
        n_eval=256,
        eval_batch_size=128,
        seed=0,
    )
