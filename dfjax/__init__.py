"""dfjax: the adversarial robustness of deepfake detectors, in JAX.

Public entry points: `dfjax.runner.run_matrix` (a whole matrix), the registries
(`dfjax.data.DATASETS`, `dfjax.models.MODELS`, `dfjax.training.RECIPES`,
`dfjax.defences.DEFENCES`, `dfjax.attacks.ATTACKS`), `dfjax.benchmark` (score your own
detector as a run cell is scored, and store it for the leaderboard:
dfjax.benchmark_api.benchmark) and `dfjax.certify` (randomized smoothing's certified
prediction and L2 radius, Cohen et al. 2019).
"""


def __getattr__(name: str):
    """`dfjax.benchmark`, imported on first use (so `import dfjax` stays light)."""
    if name == "benchmark":
        from dfjax.benchmark_api import benchmark

        return benchmark
    raise AttributeError(f"module 'dfjax' has no attribute {name!r}")


def certify(logits_fn, x, y, key, *, sigma, n0=100, n=1000, alpha=0.001):
    """(prediction int [b], -1 = abstain; certified L2 radius [b]) of the detector
    `logits_fn` smoothed with Gaussian noise `sigma`: see dfjax.defences.smoothing.certify."""
    from dfjax.defences.smoothing import certify as _certify

    return _certify(logits_fn, x, y, key, sigma=sigma, n0=n0, n=n, alpha=alpha)
