"""The video path, small: synthetic_videos (rendered MP4 clips, read back through the
DFDC pipeline: 8 evenly sampled frames per video, Haar face crops) x cnn7 x
{noise, fgsm, pgd} x delta in {0, 2, 8, 16}/255. Metrics are per frame; the runner
adds video-level ones (mean frame probability per video) via
`dfjax.metrics.video.video_level_metrics` where it supports them."""

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec, delta_to_eps

DELTAS = (0, 2, 8, 16)


def get_config() -> MatrixConfig:
    return MatrixConfig(
        name="videos",
        datasets=(DatasetSpec(name="synthetic_videos", image_size=64, num_examples=2400,
                              options={"frames_per_video": 8, "clip_frames": 16,
                                       "frame_size": 160}),),
        models=(ModelSpec(name="cnn7"),),
        trainings=(TrainSpec(recipe="standard", epochs=8, batch_size=64, learning_rate=1e-3),),
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
