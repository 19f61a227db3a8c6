"""`synthetic_faces`: the embedded default dataset -- procedural faces, real and fake.

Nothing is downloaded; every image follows from `spec.seed`. A *real* is a rendered
face passed through a camera (slight blur, sensor noise, JPEG at a random quality).
A *fake* is a face from the same generator, same identity and pose distributions,
manipulated with one of the traces real detectors learn, then passed through the
very same camera -- so compression, identity, background and pose carry no label
and only the manipulation does:

* ``swap``: the inner face (brows, eyes, nose, mouth) of another person, rendered in
  the target's pose and light, blended in with a soft elliptical mask; leaves a
  blending boundary, a colour mismatch, a resampled (softer) inner face and an
  exposure jump: the donor face is brighter by `swap_exposure` (default
  U(0.25, 0.35), added to every channel before clipping, as an unmatched exposure).
* ``upsample``: the face re-synthesised at half resolution and upsampled by nearest
  neighbour with an uneven transposed-convolution-like 2x2 gain pattern; leaves
  periodic (checkerboard) spectral peaks.
* ``smooth``: the skin smoothed inside the face, removing the skin's fine texture.

The option ``difficulty`` in (0, 1] (``spec.option("difficulty")``, default
`DEFAULT_DIFFICULTY`) scales artifact strength: higher is subtler, hence harder.

The exposure jump is the one cue that survives an Linf perturbation of 8/255 (the
others are a few grey levels; version 1.0.0 had only those, and PGD adversarial
training at 2/255 or more collapsed every detector to a constant): it gives
adversarial training something robust to learn, on a third of the fakes. The
option ``swap_exposure`` (a float in [0, 0.5], the jump's mean; default 0.3, spread
+-0.05) sets it; 0 removes it, leaving no robust cue. It does not scale with
`difficulty`.
Splits are 60/20/20 by identity: an identity's reals and the fakes made on it fall
in one split, and the identity id is each example's ``group``. Within a split,
examples are ordered identity by identity with labels alternating real, fake.

Example:
    >>> from dfjax.data.synthetic_faces import generate_split_arrays
    >>> out = generate_split_arrays("test", num_examples=40, image_size=32, seed=0)
    >>> out["images"].shape, out["images"].dtype
    ((8, 32, 32, 3), dtype('uint8'))
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import tensorflow_datasets as tfds

from dfjax.config import DATA_VERSIONS, DatasetSpec
from dfjax.data._tfds import ArrayBuilder
from dfjax.data.base import SPLITS

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 256
MIN_EXAMPLES = 10
DEFAULT_DIFFICULTY = 0.15  # cnn7 (8 epochs, 6000 train): ~85% clean test accuracy
DEFAULT_SWAP_EXPOSURE = 0.3
MAX_SWAP_EXPOSURE = 0.5
SWAP_EXPOSURE_SPREAD = 0.05
IMAGES_PER_IDENTITY = 4  # two reals and two fakes per identity
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}
METHODS = ("none", "swap", "upsample", "smooth")  # index = the `method` code
_IDENTITIES_PER_CHUNK = 64  # generation batch: 256 images

Params = dict[str, np.ndarray]


# --------------------------------------------------------------------------- sizes


def check_image_size(image_size: int) -> int:
    """Returns `image_size` if it lies in [32, 256], else raises ValueError."""
    if not MIN_IMAGE_SIZE <= int(image_size) <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"synthetic_faces renders images of {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels a "
            f"side; got image_size={image_size}")
    return int(image_size)


def check_difficulty(difficulty: float) -> float:
    """Returns `difficulty` if it lies in (0, 1], else raises ValueError."""
    difficulty = float(difficulty)
    if not 0.0 < difficulty <= 1.0:
        raise ValueError(f"difficulty must be in (0, 1]; got {difficulty}")
    return difficulty


def check_swap_exposure(swap_exposure: float) -> float:
    """Returns `swap_exposure` if it lies in [0, 0.5], else raises ValueError."""
    swap_exposure = float(swap_exposure)
    if not 0.0 <= swap_exposure <= MAX_SWAP_EXPOSURE:
        raise ValueError(f"swap_exposure must be in [0, {MAX_SWAP_EXPOSURE}]; got {swap_exposure}")
    return swap_exposure


def artifact_strength(difficulty: float) -> float:
    """Mean artifact strength in [0.05, 1) for a difficulty in (0, 1] (1 = subtlest)."""
    return 1.0 - 0.95 * check_difficulty(difficulty)


def split_sizes(num_examples: int) -> dict[str, int]:
    """Examples per split: 60/20/20 of `num_examples`, summing to it exactly."""
    if num_examples < MIN_EXAMPLES:
        raise ValueError(f"synthetic_faces needs num_examples >= {MIN_EXAMPLES}; "
                         f"got {num_examples}")
    train = round(num_examples * SPLIT_FRACTIONS["train"])
    validation = round(num_examples * SPLIT_FRACTIONS["validation"])
    return {"train": train, "validation": validation,
            "test": num_examples - train - validation}


def _identity_offset(split: str, num_examples: int) -> int:
    """First identity id of `split`: ids are unique across the three splits."""
    sizes = split_sizes(num_examples)
    offset = 0
    for name in SPLITS:
        if name == split:
            return offset
        offset += -(-sizes[name] // IMAGES_PER_IDENTITY)
    raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")


# --------------------------------------------------------------------------- sampling

_SKIN_LIGHT = np.array([0.97, 0.83, 0.73], np.float32)
_SKIN_DARK = np.array([0.33, 0.21, 0.14], np.float32)
_HAIR = np.array([[0.07, 0.06, 0.05], [0.22, 0.14, 0.08], [0.42, 0.28, 0.16],
                  [0.83, 0.70, 0.44], [0.58, 0.24, 0.11], [0.68, 0.67, 0.66]], np.float32)
_IRIS = np.array([[0.30, 0.18, 0.08], [0.14, 0.08, 0.04], [0.25, 0.45, 0.70],
                  [0.30, 0.50, 0.30], [0.50, 0.40, 0.20], [0.45, 0.50, 0.55]], np.float32)


def sample_identities(rng: np.random.Generator, n: int) -> Params:
    """What stays fixed for a person: head shape, skin, hair, eyes, background, clothes.

    Returns a dict of float32 arrays with leading dimension n (colours [n, 3] in [0, 1]).
    """
    u = lambda lo, hi, shape=(n,): rng.uniform(lo, hi, shape).astype(np.float32)  # noqa: E731
    tone = u(0, 1) ** 0.8
    skin = (_SKIN_LIGHT * (1 - tone[:, None]) + _SKIN_DARK * tone[:, None]) * u(0.93, 1.07, (n, 3))
    hair = _HAIR[rng.integers(0, len(_HAIR), n)] * u(0.75, 1.2, (n, 1))
    head_a = u(0.40, 0.50)
    grey, saturation = u(0.15, 0.85, (n, 1)), u(0.1, 0.8, (n, 1))
    bg1 = grey + saturation * (u(0.0, 1.0, (n, 3)) - grey)
    bg2 = bg1 + u(-0.35, 0.35, (n, 3))
    return {
        "head_a": head_a, "head_b": head_a * u(1.18, 1.38), "jaw": u(0.05, 0.3),
        "skin": skin, "pore_amp": u(0.02, 0.045),
        "hair": hair, "hair_style": rng.integers(0, 4, n).astype(np.float32),
        "hairline": u(-0.45, -0.25), "hair_volume": u(1.03, 1.14),
        "hair_wave": u(0.0, 0.05), "hair_freq": u(8, 25), "hair_phase": u(0, 6.3),
        "eye_x": u(0.16, 0.22), "eye_y": u(-0.1, -0.02), "eye_w": u(0.075, 0.1),
        "eye_h": u(0.4, 0.55), "iris": _IRIS[rng.integers(0, len(_IRIS), n)] * u(0.8, 1.2, (n, 1)),
        "iris_r": u(0.45, 0.6), "brow_h": u(0.075, 0.11), "brow_t": u(0.012, 0.025),
        "brow_dark": u(0.5, 1.0), "nose_y": u(0.12, 0.2), "nose_w": u(0.035, 0.06),
        "mouth_y": u(0.29, 0.37), "mouth_w": u(0.1, 0.16), "lip_h": u(0.018, 0.035),
        "lip": u(0.55, 0.85, (n, 3)) * np.array([1.0, 0.6, 0.6], np.float32),
        "bg1": bg1, "bg2": bg2, "bg_angle": u(0, 6.3), "bg_texture": u(0.0, 0.18),
        "clothes": u(0.05, 0.9, (n, 3)) * u(0.5, 1.0, (n, 1)), "neck_w": u(0.16, 0.24),
    }


def sample_appearances(rng: np.random.Generator, n: int) -> Params:
    """What changes between two photos of a person: pose, light, expression, exposure."""
    u = lambda lo, hi, shape=(n,): rng.uniform(lo, hi, shape).astype(np.float32)  # noqa: E731
    blink = rng.random(n) < 0.05
    light_angle = u(0, 6.3)
    return {
        "angle": np.clip(rng.normal(0, 0.1, n), -0.25, 0.25).astype(np.float32),
        "tx": u(-0.08, 0.08), "ty": u(-0.1, 0.04), "scale": u(0.88, 1.1), "yaw": u(-0.05, 0.05),
        "light_x": np.cos(light_angle) * u(0.2, 0.7), "light_y": np.sin(light_angle) * u(0.2, 0.7),
        "ambient": u(0.45, 0.7), "light_grad": u(0.0, 0.25),
        "exposure": u(0.85, 1.12), "white_balance": u(0.94, 1.06, (n, 3)),
        "smile": u(-0.4, 1.0), "mouth_open": u(0, 1) ** 3 * 0.05,
        "eye_open": np.where(blink, 0.12, u(0.65, 1.05)).astype(np.float32),
        "gaze_x": u(-0.35, 0.35), "gaze_y": u(-0.2, 0.2), "brow_raise": u(-0.015, 0.03),
        "brow_tilt": u(-0.25, 0.25),
    }


def _take(params: Params, index: np.ndarray) -> Params:
    return {k: v[index] for k, v in params.items()}


# --------------------------------------------------------------------------- rendering


def _c(p: np.ndarray) -> np.ndarray:
    """[b] -> [b, 1, 1] (broadcasts against a [b, h, w] pixel grid)."""
    return p[:, None, None]


def _soft(signed_distance: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Antialiased coverage in [0, 1] of a shape from its signed distance (< 0 inside)."""
    return np.clip(0.5 - signed_distance / px, 0.0, 1.0)


def _ellipse_sd(x, y, cx, cy, a, b):
    """Approximate signed distance to an ellipse (exact on the minor axis)."""
    r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    return (r - 1.0) * np.minimum(a, b)


def _paint(image: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    """In place: image [b, h, w, 3] <- colour [b, 3] (or [b, h, w, 3]) where coverage [b, h, w]."""
    rows = np.flatnonzero(coverage.any(axis=(0, 2)))
    cols = np.flatnonzero(coverage.any(axis=(0, 1)))
    if rows.size == 0:
        return
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    colour = colour[:, None, None, :] if colour.ndim == 2 else colour[box]
    region = image[box]  # a view: only the batch's bounding box of the shape is touched
    region += coverage[box][..., None] * (colour - region)


def render_faces(params: Params, image_size: int, rng: np.random.Generator) -> dict[str, Any]:
    """Renders a batch of faces from identity + appearance parameters.

    Args:
      params: `sample_identities` and `sample_appearances` merged, leading dimension b.
      image_size: side s in pixels.
      rng: for the per-pixel skin texture and the background texture.

    Returns:
      dict with `image` float32 [b, s, s, 3] in [0, 1], `head` and `skin` coverage
      float32 [b, s, s] in [0, 1], face-frame coordinates `x`, `y` float32 [b, s, s]
      and the pixel size in face units `px` [b, 1, 1].
    """
    p = {k: (_c(v) if v.ndim == 1 else v) for k, v in params.items()}
    b, s = len(params["angle"]), image_size
    grid = (np.arange(s, dtype=np.float32) + 0.5) / s * 2.0 - 1.0
    u, v = grid[None, None, :], grid[None, :, None]
    cos, sin, sc = np.cos(p["angle"]), np.sin(p["angle"]), p["scale"]
    du, dv = u - p["tx"], v - (p["ty"] - 0.08)
    x = (cos * du + sin * dv) / sc
    y = (cos * dv - sin * du) / sc
    px = 2.0 / (s * sc)
    a, hb = p["head_a"], p["head_b"]

    # Background: two-colour gradient plus a smooth random texture.
    direction = np.clip(0.5 + 0.5 * (np.cos(p["bg_angle"]) * u + np.sin(p["bg_angle"]) * v), 0, 1)
    image = params["bg1"][:, None, None, :] + direction[..., None] * (
        params["bg2"] - params["bg1"])[:, None, None, :]
    coarse = rng.uniform(-1, 1, (b, 5, 5, 3)).astype(np.float32)
    texture = np.stack([cv2.resize(c, (s, s), interpolation=cv2.INTER_CUBIC) for c in coarse])
    image += texture * params["bg_texture"][:, None, None, None]

    # Body: clothes, neck, long hair behind the head, ears.
    _paint(image, _soft(_ellipse_sd(x, y, 0.0, 1.1, 1.0, 0.5), px), params["clothes"])
    neck = _soft(np.maximum(np.abs(x) - p["neck_w"], 0.2 - y), px)
    _paint(image, neck, params["skin"] * 0.8)
    style = p["hair_style"]
    hair_colour = params["hair"]
    is_long = (style == 2).astype(np.float32)
    long_hair = _soft(_ellipse_sd(x, y, 0.0, 0.2, a * 1.28, hb * 1.15), px) * is_long
    _paint(image, long_hair, hair_colour * 0.85)
    ax = np.abs(x)
    _paint(image, _soft(_ellipse_sd(ax, y, a - 0.01, 0.02, 0.07, 0.12), px), params["skin"] * 0.92)

    # Head with a narrowing jaw, skin texture.
    narrowing = 1.0 - p["jaw"] * np.clip(y / hb, 0.0, 1.0) ** 2
    head = _soft(_ellipse_sd(x / narrowing, y, 0.0, 0.0, a, hb), px)
    _paint(image, head, params["skin"])

    # Eyes: outline, whites, iris, pupil, catchlight.
    fx = x - p["yaw"]
    side = np.where(fx < 0, -1.0, 1.0).astype(np.float32)
    ex, ey = fx - side * p["eye_x"], y - p["eye_y"]
    ew, eh = p["eye_w"], p["eye_w"] * p["eye_h"] * p["eye_open"]
    outline_sd = _ellipse_sd(ex, ey, 0.0, 0.0, ew + 0.012, eh + 0.008)
    _paint(image, _soft(outline_sd, px) * 0.8, params["skin"] * 0.35)
    whites = _soft(_ellipse_sd(ex, ey, 0.0, 0.0, ew, eh), px)
    _paint(image, whites, np.full((b, 3), 0.93, np.float32))
    gx, gy = p["gaze_x"] * ew * 0.5, p["gaze_y"] * eh
    iris_r = p["iris_r"] * ew
    eye_dist = np.sqrt((ex - gx) ** 2 + (ey - gy) ** 2)
    _paint(image, _soft(eye_dist - iris_r, px) * whites, params["iris"])
    _paint(image, _soft(eye_dist - iris_r * 0.45, px) * whites, np.full((b, 3), 0.03, np.float32))
    glint = np.sqrt((ex - gx + iris_r * 0.35) ** 2 + (ey - gy + iris_r * 0.35) ** 2)
    _paint(image, _soft(glint - iris_r * 0.18, px) * whites, np.ones((b, 3), np.float32))

    # Brows.
    by = ey + p["brow_h"] + p["brow_raise"] + p["brow_tilt"] * side * ex * 0.5
    brow = _soft(_ellipse_sd(ex, by - 0.04 * (ex / ew) ** 2, 0.0, 0.0, ew * 1.25, p["brow_t"]), px)
    brow_colour = hair_colour * params["brow_dark"][:, None]
    _paint(image, brow * 0.9, brow_colour)

    # Nose: a side shadow, a lit tip, nostrils.
    nx, ny = fx, y - p["nose_y"]
    shadow_side = np.where(p["light_x"] > 0, -1.0, 1.0).astype(np.float32)
    ridge = np.exp(-((nx - shadow_side * p["nose_w"]) / 0.02) ** 2) * np.clip(
        1.0 - np.abs(ny + 0.1) / 0.13, 0.0, 1.0)
    _paint(image, ridge * 0.35, params["skin"] * 0.6)
    nostril = _soft(_ellipse_sd(np.abs(nx), ny, p["nose_w"] * 0.6, 0.0, p["nose_w"] * 0.4,
                                0.013), px)
    _paint(image, nostril * 0.7, params["skin"] * 0.35)

    # Mouth: lips bent by the smile, an open dark interior, the lip line.
    mx = fx / p["mouth_w"]
    my = y - p["mouth_y"] - p["smile"] * 0.04 * (1.0 - mx**2)
    opening = p["mouth_open"]
    _paint(image, _soft(_ellipse_sd(fx, my, 0.0, 0.0, p["mouth_w"], p["lip_h"] + opening), px),
           params["lip"] * params["skin"] * 1.3)
    inner = _soft(_ellipse_sd(fx, my, 0.0, 0.0, p["mouth_w"] * 0.8, opening + 0.004), px)
    _paint(image, inner * 0.85, np.full((b, 3), 0.12, np.float32) * params["lip"] * 2)

    # Hair on top: a cap down to a wavy hairline that drops at the temples.
    hairline = p["hairline"] + 0.05 * (style == 3).astype(np.float32) + p["hair_wave"] * np.sin(
        p["hair_freq"] * x + p["hair_phase"]) + 0.5 * (x / a) ** 2
    cap_sd = np.maximum(_ellipse_sd(x, y, 0.0, -0.02, a * p["hair_volume"],
                                    hb * p["hair_volume"]), y - hairline)
    hair = _soft(cap_sd, px) * np.where(style == 0, np.float32(0.3), np.float32(1.0))
    strands = 1.0 + 0.12 * np.sin(70.0 * x + 9.0 * y + p["hair_phase"])
    _paint(image, hair, hair_colour[:, None, None, :] * strands[..., None])

    # Light: a shaded head sphere, a global gradient, exposure and white balance.
    nxs, nys = x / (a * 1.05), y / (hb * 1.05)
    nz = np.sqrt(np.clip(1.0 - nxs**2 - nys**2, 0.0, 1.0))
    lambert = np.clip(nxs * p["light_x"] + nys * p["light_y"] + nz * 0.75, 0.0, 1.2)
    shade = p["ambient"] + (1.0 - p["ambient"]) * lambert
    head_region = np.maximum(head, hair)
    light = (1.0 + head_region * (shade - 1.0)) * (
        1.0 + p["light_grad"] * (p["light_x"] * u + p["light_y"] * v)) * p["exposure"]
    image *= light[..., None] * params["white_balance"][:, None, None, :]

    # Skin texture: fine pore-scale noise on uncovered skin.
    skin = head * (1.0 - hair) * (1.0 - whites)
    pores = rng.standard_normal((b, s, s), dtype=np.float32) * p["pore_amp"]
    image += (pores * skin)[..., None] * params["skin"][:, None, None, :] * 1.5
    np.clip(image, 0.0, 1.0, out=image)
    return {"image": image, "head": head, "skin": skin, "x": x, "y": y, "px": px}


# --------------------------------------------------------------------------- manipulations


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
    fx = x - _c(params["yaw"])
    top = params["eye_y"] - params["brow_h"] - 0.05
    bottom = params["mouth_y"] + params["lip_h"] + 0.05
    cy, half_h = _c((top + bottom) / 2), _c((bottom - top) / 2)
    half_w = _c(params["eye_x"] + params["eye_w"] + 0.05)
    feather = _c(0.02 + 0.22 * (1.0 - strength))
    mask = _soft(_ellipse_sd(fx, y, 0.0, cy, half_w, half_h) + feather / 2, feather + px)
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
    weight = face * _c(strength)
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
    weight = target["skin"] * _c(strength)
    return np.clip(image + weight[..., None] * (smooth - image), 0.0, 1.0)


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


# --------------------------------------------------------------------------- generation


def _generate_chunk(rng: np.random.Generator, identity_ids: np.ndarray, count: int,
                    image_size: int, strength: float,
                    swap_exposure: float) -> dict[str, np.ndarray]:
    """`count` images of the given identities (IMAGES_PER_IDENTITY each, real/fake alternating)."""
    identities = sample_identities(rng, len(identity_ids))
    owner = np.arange(count) // IMAGES_PER_IDENTITY
    labels = (np.arange(count) % 2).astype(np.int32)
    params = {**_take(identities, owner), **sample_appearances(rng, count)}
    rendered = render_faces(params, image_size, rng)
    image = rendered["image"]

    methods = np.zeros(count, np.int32)
    fakes = np.flatnonzero(labels == 1)
    methods[fakes] = rng.integers(1, len(METHODS), len(fakes))
    strengths = np.clip(strength * rng.uniform(0.5, 1.5, count), 0.0, 1.0).astype(np.float32)
    for code, name in enumerate(METHODS):
        index = np.flatnonzero(methods == code)
        if code == 0 or len(index) == 0:
            continue
        target = {k: v[index] for k, v in rendered.items()}
        sub = _take(params, index)
        if name == "swap":
            donors = sample_identities(rng, len(index))
            donor_params = {**sub, **{k: v for k, v in donors.items()
                                      if k not in ("bg1", "bg2", "bg_angle", "bg_texture",
                                                   "clothes")}}
            donor = render_faces(donor_params, image_size, rng)["image"]
            image[index] = face_swap(target, donor, sub, strengths[index], rng,
                                     exposure=swap_exposure)
        elif name == "upsample":
            image[index] = generator_upsample(target, strengths[index], rng)
        else:
            image[index] = skin_smoothing(target, strengths[index])
    return {"images": camera(image, rng), "labels": labels,
            "groups": identity_ids[owner].astype(np.int64), "methods": methods}


def generate_split_arrays(split: str, *, num_examples: int = 10_000, image_size: int = 64,
                          seed: int = 0, difficulty: float = DEFAULT_DIFFICULTY,
                          swap_exposure: float = DEFAULT_SWAP_EXPOSURE
                          ) -> dict[str, np.ndarray]:
    """Generates one split, independently of the others (same arguments, same arrays).

    Args:
      split: "train", "validation" or "test".
      num_examples: total over the three splits (60/20/20 by identity).
      image_size: side in pixels, 32..256.
      seed: the dataset seed; each split and each 256-image chunk gets its own stream.
      difficulty: in (0, 1]; higher = subtler artifacts.
      swap_exposure: mean exposure jump of swapped faces, in [0, 0.5] (0 = none).

    Returns:
      dict with `images` uint8 [n, s, s, 3], `labels` int32 [n] (0 real, 1 fake),
      `groups` int64 [n] (identity ids), `methods` int32 [n] (index into METHODS).
    """
    image_size = check_image_size(image_size)
    strength = artifact_strength(difficulty)
    swap_exposure = check_swap_exposure(swap_exposure)
    count = split_sizes(num_examples)[split]
    first = _identity_offset(split, num_examples)
    num_ids = -(-count // IMAGES_PER_IDENTITY)
    per_chunk = _IDENTITIES_PER_CHUNK
    num_chunks = -(-num_ids // per_chunk)
    streams = np.random.SeedSequence([seed, SPLITS.index(split)]).spawn(max(num_chunks, 1))
    parts = []
    for k in range(num_chunks):
        ids = np.arange(k * per_chunk, min((k + 1) * per_chunk, num_ids)) + first
        n = min(count - k * per_chunk * IMAGES_PER_IDENTITY, len(ids) * IMAGES_PER_IDENTITY)
        parts.append(_generate_chunk(np.random.default_rng(streams[k]), ids, n, image_size,
                                     strength, swap_exposure))
    if not parts:
        s = image_size
        return {"images": np.zeros((0, s, s, 3), np.uint8), "labels": np.zeros(0, np.int32),
                "groups": np.zeros(0, np.int64), "methods": np.zeros(0, np.int32)}
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


# --------------------------------------------------------------------------- TFDS builder


class SyntheticFacesBuilder(ArrayBuilder, skip_registration=True):
    """Procedural real and manipulated faces; options: `difficulty` in (0, 1],
    `swap_exposure` in [0, 0.5]."""

    VERSION = tfds.core.Version(DATA_VERSIONS["synthetic_faces"])

    description = ("Procedurally rendered faces; fakes carry face-swap, generator-upsampling "
                   "or skin-smoothing traces; both classes share one camera pipeline.")
    homepage = ""
    OPTIONS = {"difficulty": DEFAULT_DIFFICULTY, "swap_exposure": DEFAULT_SWAP_EXPOSURE}

    @staticmethod
    def check_options(options):
        check_difficulty(options["difficulty"])
        check_swap_exposure(options["swap_exposure"])

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None):
        check_image_size(spec.image_size)
        split_sizes(spec.num_examples)
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        super().__init__(spec=spec, data_dir=data_dir, manual_dir=manual_dir)
        self.difficulty = check_difficulty(self.options["difficulty"])
        self.swap_exposure = check_swap_exposure(self.options["swap_exposure"])

    def split_arrays(self, split: str) -> dict[str, np.ndarray]:
        """One split's arrays, generated once per builder instance."""
        if split not in self._arrays:
            start = time.perf_counter()
            arrays = generate_split_arrays(
                split, num_examples=self.spec.num_examples, image_size=self.spec.image_size,
                seed=self.spec.seed, difficulty=self.difficulty,
                swap_exposure=self.swap_exposure)
            self._arrays[split] = arrays
            counts = {name: int((arrays["methods"] == code).sum())
                      for code, name in enumerate(METHODS) if code}
            self.report[split] = {
                "examples": int(len(arrays["labels"])), "real": int((arrays["labels"] == 0).sum()),
                "fake": int((arrays["labels"] == 1).sum()),
                "identities": int(len(np.unique(arrays["groups"]))), "manipulations": counts,
                "seconds": round(time.perf_counter() - start, 3)}
            self.report["difficulty"] = self.difficulty
            self.report["artifact_strength"] = artifact_strength(self.difficulty)
            self.report["swap_exposure"] = self.swap_exposure
        return self._arrays[split]

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        arrays = self.split_arrays(split)
        for image, label, group in zip(arrays["images"], arrays["labels"], arrays["groups"]):
            yield {"image": image, "label": int(label), "group": int(group)}

