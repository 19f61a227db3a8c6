"""Every full-size model x {standard, pgd_at} on a small synthetic_faces (64x64):
the model zoo's robustness at a glance. Small: 2000 images, 3 epochs, PGD-10 only."""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps

ZOO = ("cnn7", "cnn6", "meso4", "mesoinception4", "xception_small", "resnet18", "resnet50",
       "gan_disc")


def get_config() -> MatrixConfig:
    return MatrixConfig(
        name="zoo",
        datasets=(DatasetSpec(name="synthetic_faces", image_size=64, num_examples=2000),),
        models=tuple(ModelSpec(name=m) for m in ZOO),
        trainings=(
            TrainSpec(recipe="standard", epochs=3, batch_size=64, learning_rate=1e-3),
            TrainSpec(recipe="pgd_at", epochs=3, batch_size=64, learning_rate=1e-3,
                      options={"eps": 8 / 255, "steps": 3, "eps_warmup": 0.5}),
        ),
        attacks=(AttackSweep(name="fgsm"), AttackSweep(name="pgd", options={"num_steps": 10})),
        eps_values=delta_to_eps(0, 2, 8),
        n_eval=256,
        eval_batch_size=128,
        seed=0,
    )
