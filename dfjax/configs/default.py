"""The default matrix `run_all.py` runs: synthetic_faces x cnn7 x {noise, fgsm, pgd}
x delta in {0, 1, 2, 4, 8, 16, 25}/255 (0-25 covers the paper's Table I)."""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps

DELTAS = (0, 1, 2, 4, 8, 16, 25)


def get_config() -> MatrixConfig:
    return MatrixConfig(
        name="default",
        datasets=(DatasetSpec(name="synthetic_faces", image_size=64, num_examples=10_000),),
        models=(ModelSpec(name="cnn7"),),
        trainings=(TrainSpec(recipe="standard", epochs=8, batch_size=64, learning_rate=1e-3),),
        attacks=(
            AttackSweep(name="noise"),
            AttackSweep(name="fgsm"),
            AttackSweep(name="pgd", options={"num_steps": 10}),
        ),
        eps_values=delta_to_eps(*DELTAS),
        n_eval=512,
        eval_batch_size=128,
        seed=0,
    )
