"""The default matrix `run_all.py` runs, sized for <= 10 minutes on a 2-core CPU:

synthetic_faces (64x64, 10,000 images) x {cnn7, cnn6, meso4} x standard training
x {noise, fgsm, pgd-10} x delta in {0, 1, 2, 4, 8, 16, 25}/255 (0-25 covers the
paper's Table I), on 256 test images.

`pgd_at` is not in it: on synthetic_faces adversarial training collapses cnn6 and
meso4 to constant predictors even when fine-tuning at eps = 1/255 (cnn7 survives at
1/255 only; everything collapses at 2/255 and above) -- the artefacts a detector can
learn here are erasable by such perturbations. See the `zoo` config to run it.
"""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps

DELTAS = (0, 1, 2, 4, 8, 16, 25)


def get_config() -> MatrixConfig:
    return MatrixConfig(
        name="default",
        datasets=(DatasetSpec(name="synthetic_faces", image_size=64, num_examples=10_000),),
        models=(ModelSpec(name="cnn7"), ModelSpec(name="cnn6"), ModelSpec(name="meso4")),
        trainings=(TrainSpec(recipe="standard", epochs=6),),
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
