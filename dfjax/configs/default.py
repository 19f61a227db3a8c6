"""The default matrix `run_all.py` runs: 11 min 38 s cold on the 2-core Xeon (Sapphire
Rapids) at 037dc0f, 222 cells (training 160 s; the cells' wall times sum to 667 s, 74 s of
it compiling; the attacks' sanity checks about a quarter of the cells' time). At 28aee9f
it took 10:44 (training 148 s, cells 598 s): the same code trained 8% slower this time,
and the auto cells compile 18 s more since the ensemble attacks only clean-correct points
(their programs are no longer shared between the standard and the pgd_at cnn7):

synthetic_faces (64x64, 10,000 images) x {cnn7, cnn6, meso4} x {standard, pgd_at}
x {noise, fgsm, pgd-10} x delta in {0, 1, 2, 4, 8, 16, 25}/255 (0-25 covers the
paper's Table I), on 256 test images.

Transfer attacks (`transfer`): PGD-10 and FGSM at delta 8/255 crafted on each of the six
detectors and scored on each of the six (6 x 6 = 36 cells an attack; the diagonal is the
white-box cell). Each source crafts once per attack (as costly as its white-box cell);
scoring a target is a forward pass.

`standard`: 5 epochs of Adam. `pgd_at` (Madry et al. 2018) at eps = 8/255 fine-tunes
that very detector (`warm_start_epochs=5`, so it is trained once and shared) for one
epoch of PGD-2, with the budget warmed up linearly over the first half of the epoch
(`eps_warmup=0.5`; without it, PGD-AT tends to fall into the constant predictor).
The robust cue it can learn is synthetic_faces' swap exposure jump (see
dfjax/data/synthetic_faces.py).

The worst case and the mitigations (`extra`): cnn7 (both trainings) behind no defence,
`jpeg` (q75, BPDA through a differentiable JPEG), `bit_depth` (3 bits, BPDA identity) and
`smoothing` (sigma 0.25), attacked adaptively at delta 8/255 by PGD-10 and (all but
smoothing) the `auto` ensemble, on the first 128 of the 256 evaluation examples. Sized
for this CPU: auto on the smoothed detector took 339 s a cell here (Square's queries and
APGD's steps each through 4 to 8 noise draws), so `dfjax run --config defences` runs it;
smoothing scores 8 noise draws, its attacks average 4 (EOT), and it is certified with
n = 200 estimation samples (the paper uses 100,000: with 200 the largest certifiable L2
radius is 0.25 * Phi^-1(0.001^(1/200)) = 0.46, so the 0.5 and 1.0 columns are 0 by
construction; `dfjax run --config defences` certifies with n = 1,000).

Rate limiting as a query budget (`query_limited`): Square (Linf, score-based black box) at
delta 8/255 with QUERY_BUDGETS = 10, 30, 100, 300, 1000 queries per example on cnn7
(both trainings, no defence, the same 128 examples): robust accuracy against the budget
(`queries.md`, `queries_*.png` in the report). Square's cost does not depend on the
detector's answers (fooled points are masked, not dropped): on this machine a Square-1000
cell on 128 64x64 images took 52 s of CPU (52 ms a query on the batch, after a ~3 s
compile), so the 10 cells cost ~2 x 1440 x 52 ms + 5 compiles = ~165 s of CPU. 5000
queries would add ~260 s a detector (3000: ~155 s), over the ~3 minutes this sub-matrix
is allowed. Each cell stores the queries an attacker who stops at success used
(dfjax.attacks.square.query_metrics).
"""

import dataclasses

from dfjax.config import (
    AttackSweep,
    DatasetSpec,
    DefenceSpec,
    MatrixConfig,
    ModelSpec,
    TrainSpec,
    delta_to_eps,
)

DELTAS = (0, 1, 2, 4, 8, 16, 25)
QUERY_BUDGETS = (10, 30, 100, 300, 1000)  # Square queries per example (log-spaced)
STANDARD_EPOCHS = 5


def get_config() -> MatrixConfig:
    dataset = DatasetSpec(name="synthetic_faces", image_size=64, num_examples=10_000)
    trainings = (
        TrainSpec(recipe="standard", epochs=STANDARD_EPOCHS),
        TrainSpec(recipe="pgd_at", epochs=1, options={
            "eps": 8 / 255, "steps": 2, "eps_warmup": 0.5,
            "warm_start_epochs": STANDARD_EPOCHS}),
    )
    pgd = AttackSweep(name="pgd", options={"num_steps": 10})
    cnn7_defended = dict(datasets=(dataset,), models=(ModelSpec(name="cnn7"),),
                         trainings=trainings, eps_values=delta_to_eps(8), n_eval=128,
                         eval_batch_size=128, seed=0)
    worst_case = MatrixConfig(
        name="default_defences",
        defences=(DefenceSpec(), DefenceSpec(name="jpeg"), DefenceSpec(name="bit_depth")),
        attacks=(pgd, AttackSweep(name="auto")), **cnn7_defended)
    smoothed = MatrixConfig(
        name="default_smoothing",
        defences=(DefenceSpec(name="smoothing", options={
            "samples": 8, "eot_samples": 4, "certify_n": 200}),),
        attacks=(pgd,), **cnn7_defended)
    query_limited = MatrixConfig(
        name="default_query_budget", defences=(DefenceSpec(),),
        attacks=tuple(AttackSweep(name="square", options={"num_queries": q})
                      for q in QUERY_BUDGETS), **cnn7_defended)
    return MatrixConfig(
        name="default",
        datasets=(dataset,),
        models=(ModelSpec(name="cnn7"), ModelSpec(name="cnn6"), ModelSpec(name="meso4")),
        trainings=trainings,
        attacks=(AttackSweep(name="noise"), AttackSweep(name="fgsm"), pgd),
        eps_values=delta_to_eps(*DELTAS),
        n_eval=256,
        eval_batch_size=128,
        seed=0,
        extra=(worst_case, smoothed, query_limited),
        transfer=(dataclasses.replace(pgd, eps_values=delta_to_eps(8)),
                  AttackSweep(name="fgsm", eps_values=delta_to_eps(8))),
    )
