"""dfjax: the adversarial robustness of deepfake detectors, in JAX.

Public entry points: `dfjax.runner.run_matrix` (a whole matrix), the registries
(`dfjax.data.DATASETS`, `dfjax.models.MODELS`, `dfjax.training.RECIPES`,
`dfjax.defences.DEFENCES`, `dfjax.attacks.ATTACKS`), and `dfjax.certify` (randomized
smoothing's certified prediction and L2 radius, Cohen et al. 2019).
"""


def certify(logits_fn, x, y, key, *, sigma, n0=100, n=1000, alpha=0.001):
    """(prediction int [b], -1 = abstain; certified L2 radius [b]) of the detector
    `logits_fn` smoothed with Gaussian noise `sigma`: see dfjax.defences.smoothing.certify."""
    from dfjax.defences.smoothing import certify as _certify

    return _certify(logits_fn, x, y, key, sigma=sigma, n0=n0, n=n, alpha=alpha)
