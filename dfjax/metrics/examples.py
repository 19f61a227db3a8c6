"""What a cell keeps per example: fake probabilities on clean and attacked inputs (for
paired comparisons between runs and ROC curves), and a small adversarial gallery."""

from __future__ import annotations

import cv2
import numpy as np

from dfjax.losses import fake_probability
from dfjax.metrics.robustness import robust_flags

GALLERY_SIZE = 4


def per_example(indices: np.ndarray, labels: np.ndarray, clean_logits, adv_logits
                ) -> dict[str, np.ndarray]:
    """{index, label, p_fake_clean, p_fake_adv}, each [n]: `indices` into the test split,
    int labels (1 = fake), float64 fake probabilities from the logits."""
    return {"index": np.asarray(indices, np.int64), "label": np.asarray(labels, np.int64),
            "p_fake_clean": fake_probability(clean_logits).astype(np.float64),
            "p_fake_adv": fake_probability(adv_logits).astype(np.float64)}


def png(image: np.ndarray) -> bytes:
    """PNG bytes of a float [h, w, c] image in [0, 1] (c = 1 or 3, RGB), rounded to 8 bits."""
    pixels = np.clip(np.rint(np.asarray(image, np.float64) * 255), 0, 255).astype(np.uint8)
    if pixels.shape[-1] == 3:
        pixels = pixels[..., ::-1]  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return encoded.tobytes()


def gallery(examples: dict[str, np.ndarray], images: np.ndarray, x_adv: np.ndarray,
            eps: float, *, size: int = GALLERY_SIZE) -> list[dict]:
    """Up to `size` entries {index, label, p_fake_clean, p_fake_adv, clean_png, adv_png,
    perturbation_png}: first the examples the attack flipped (clean correct, attacked
    wrong), then the others, each group in evaluation order. images, x_adv: float
    [n, h, w, c] in [0, 1]; the perturbation is amplified to the full range,
    0.5 + (x_adv - x) / (2 eps). Empty for eps = 0 (nothing to show)."""
    if eps <= 0:
        return []
    clean_ok = robust_flags(examples["label"], examples["p_fake_clean"])
    adv_ok = robust_flags(examples["label"], examples["p_fake_adv"])
    flipped = np.flatnonzero(clean_ok & ~adv_ok)
    order = np.concatenate([flipped, np.setdiff1d(np.arange(len(clean_ok)), flipped)])[:size]
    out = []
    for i in order:
        delta = 0.5 + (x_adv[i] - images[i]) / (2 * eps)
        out.append({"index": int(examples["index"][i]), "label": int(examples["label"][i]),
                    "p_fake_clean": float(examples["p_fake_clean"][i]),
                    "p_fake_adv": float(examples["p_fake_adv"][i]),
                    "clean_png": png(images[i]), "adv_png": png(x_adv[i]),
                    "perturbation_png": png(delta)})
    return out
