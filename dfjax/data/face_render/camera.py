"""The capture pipeline every image goes through, real or fake alike: Gaussian blur,
sensor noise and JPEG at a random quality -- so compression carries no label."""

from __future__ import annotations

import cv2
import numpy as np


def camera(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The capture pipeline every image goes through: blur, sensor noise, JPEG.

    Args:
      images: float32 [b, s, s, 3] in [0, 1].
      rng: for blur widths, noise and JPEG qualities.

    Returns:
      uint8 [b, s, s, 3].
    """
    b = len(images)
    sigmas = rng.uniform(0.3, 0.7, b)
    noise_std = rng.uniform(0.004, 0.02, b).astype(np.float32)
    qualities = rng.integers(60, 96, b)
    noise = rng.standard_normal(images.shape, dtype=np.float32) * noise_std[:, None, None, None]
    out = np.empty(images.shape, np.uint8)
    for i in range(b):
        blurred = cv2.GaussianBlur(images[i], (0, 0), float(sigmas[i]))
        pixels = np.clip((blurred + noise[i]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                             int(qualities[i])])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return out
