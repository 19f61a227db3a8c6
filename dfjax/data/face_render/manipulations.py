"""The manipulations that make a rendered face a fake, each leaving a trace that real
deepfake detectors learn:

* `face_swap`: the inner face (brows, eyes, nose, mouth) of another person, rendered
  in the target's pose and light, blended in with a soft elliptical mask; leaves a
  blending boundary, a colour mismatch, a resampled (softer) inner face and an exposure
  jump: the donor face is brighter by about `exposure` (each swap draws
  U(exposure - SWAP_EXPOSURE_SPREAD, exposure + SWAP_EXPOSURE_SPREAD), added to every
  channel before clipping, as an unmatched exposure).
* `generator_upsample`: the face re-synthesised at half resolution and upsampled by
  nearest neighbour with an uneven transposed-convolution-like 2x2 gain pattern;
  leaves periodic (checkerboard) spectral peaks.
* `skin_smoothing`: the skin smoothed (edge-preserving) inside the face, removing its
  fine texture.

Each takes a `render_faces` output and a per-image strength in [0, 1] (1 = the
strongest trace) and returns float32 images in [0, 1].
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from dfjax.data.face_render._drawing import coverage, ellipse_sd, per_image
from dfjax.data.face_render.render import Params

DEFAULT_SWAP_EXPOSURE = 0.3
SWAP_EXPOSURE_SPREAD = 0.05


def _weighted_mean(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[b, h, w, 3], [b, h, w] -> [b, 3] mean colour under the weight."""
    total = weight.sum(axis=(1, 2))[:, None] + 1e-6
    return np.einsum("bhwc,bhw->bc", image, weight) / total


def face_swap(target: dict[str, Any], donor: np.ndarray, params: Params, strength: np.ndarray,
              rng: np.random.Generator, exposure: float = DEFAULT_SWAP_EXPOSURE) -> np.ndarray:
    """Blends the donor's inner face onto the target with a soft elliptical mask.

    Args:
      target: `render_faces` output of the target faces (b of them).
      donor: float32 [b, s, s, 3] in [0, 1], other identities rendered in the target pose.
      params: the targets' merged parameters.
      strength: float32 [b] in [0, 1]: 1 = sharp seam, raw colour mismatch, soft donor face;
        near 0 = wide feather, colour-matched donor, no resampling.
      rng: for the generator's colour drift and the exposure jumps.
      exposure: mean exposure jump of the donor face (0 = none); each swap draws
        U(exposure - 0.05, exposure + 0.05), clipped at 0.

    Returns:
      float32 [b, s, s, 3] in [0, 1].
    """
    b, s = donor.shape[:2]
    x, y, px = target["x"], target["y"], target["px"]
    fx = x - per_image(params["yaw"])
    top = params["eye_y"] - params["brow_h"] - 0.05
    bottom = params["mouth_y"] + params["lip_h"] + 0.05
    cy, half_h = per_image((top + bottom) / 2), per_image((bottom - top) / 2)
    half_w = per_image(params["eye_x"] + params["eye_w"] + 0.05)
    feather = per_image(0.02 + 0.22 * (1.0 - strength))
    mask = coverage(ellipse_sd(fx, y, 0.0, cy, half_w, half_h) + feather / 2, feather + px)
    correction = 1.0 - strength
    shift = _weighted_mean(target["image"], mask) - _weighted_mean(donor, mask)
    drift = rng.normal(0.0, 0.05, (b, 3)).astype(np.float32) * strength[:, None]
    jump = np.zeros(b, np.float32)
    if exposure > 0:
        jump = np.maximum(rng.uniform(exposure - SWAP_EXPOSURE_SPREAD,
                                      exposure + SWAP_EXPOSURE_SPREAD, b), 0.0)
    donor = donor + (correction[:, None] * shift + drift + jump[:, None])[:, None, None, :]
    for i in range(b):  # the generator's face is softer: resample at a lower resolution
        small = max(8, round(s / (1.0 + 0.8 * float(strength[i]))))
        down = cv2.resize(donor[i], (small, small), interpolation=cv2.INTER_AREA)
        donor[i] = cv2.resize(down, (s, s), interpolation=cv2.INTER_LINEAR)
    out = target["image"] + mask[..., None] * (donor - target["image"])
    return np.clip(out, 0.0, 1.0)


def generator_upsample(target: dict[str, Any], strength: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Replaces the face by a half-resolution copy upsampled like a transposed conv.

    Nearest-neighbour upsampling times a random uneven 2x2 gain pattern (the overlap
    of a stride-2 transposed convolution) leaves periodic spectral peaks.

    Args:
      target: `render_faces` output (b faces).
      strength: float32 [b] in [0, 1], the blend weight of the upsampled face.
      rng: for the gain patterns.

    Returns:
      float32 [b, s, s, 3] in [0, 1].
    """
    image = target["image"]
    b, s = image.shape[:2]
    e = s - s % 2
    blocks = image[:, :e, :e].reshape(b, e // 2, 2, e // 2, 2, 3).mean(axis=(2, 4))
    up = image.copy()
    up[:, :e, :e] = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)
    taps = rng.uniform(0.3, 1.0, (b, 2)).astype(np.float32)
    gains = np.einsum("bi,bj->bij", np.stack([np.ones(b, np.float32), taps[:, 0]], 1),
                      np.stack([np.ones(b, np.float32), taps[:, 1]], 1))
    gains = gains / gains.mean(axis=(1, 2), keepdims=True) - 1.0  # zero-mean [b, 2, 2]
    pattern = np.tile(gains, (1, s // 2 + 1, s // 2 + 1))[:, :s, :s]
    up = up * (1.0 + 0.12 * pattern[..., None])
    face = np.clip(target["head"] * 1.15, 0.0, 1.0)
    weight = face * per_image(strength)
    return np.clip(image + weight[..., None] * (up - image), 0.0, 1.0)


def skin_smoothing(target: dict[str, Any], strength: np.ndarray) -> np.ndarray:
    """Smooths the skin (edge-preserving), removing its fine texture.

    Args:
      target: `render_faces` output (b faces).
      strength: float32 [b] in [0, 1], the blend weight of the smoothed skin.

    Returns:
      float32 [b, s, s, 3] in [0, 1].
    """
    image = target["image"]
    smooth = np.stack([cv2.bilateralFilter(im, 7, 0.2, 3.0) for im in image])
    weight = target["skin"] * per_image(strength)
    return np.clip(image + weight[..., None] * (smooth - image), 0.0, 1.0)
