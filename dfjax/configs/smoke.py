"""A seconds-long matrix for tests and CI: tiny data, a tiny cnn7, two budgets."""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps


def get_config() -> MatrixConfig:
    return MatrixConfig(
        name="smoke",
        datasets=(DatasetSpec(name="synthetic_faces", image_size=32, num_examples=400),),
        models=(ModelSpec(name="cnn7_tiny"),),
        trainings=(TrainSpec(recipe="standard", epochs=2, batch_size=32),),
        attacks=(
            AttackSweep(name="noise"),
            AttackSweep(name="fgsm"),
            AttackSweep(name="pgd", options={"num_steps": 3}),
        ),
        eps_values=delta_to_eps(0, 8),
        n_eval=64,
        eval_batch_size=32,
        seed=0,
    )
