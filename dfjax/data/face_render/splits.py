"""The synthetic_faces splits: which faces are rendered, which are manipulated and how
strongly, all captured by one camera; and the checks of the dataset's options.

Splits are 60/20/20 by identity (`split_sizes`; identity ids are unique across the
three). Within a split, examples are ordered identity by identity, IMAGES_PER_IDENTITY
each, labels alternating real, fake. Each fake gets one of METHODS[1:], drawn
uniformly, at a strength of `artifact_strength(difficulty)` times U(0.5, 1.5) clipped
to [0, 1]; a swap's donor is another identity rendered in the target's pose, light and
scene. Each split, and each chunk of 64 identities in it, draws from its own random
stream (`np.random.SeedSequence([seed, split index])`), so a split is generated
independently of the others.

Example:
    >>> from dfjax.data.face_render import generate_split_arrays
    >>> out = generate_split_arrays("test", num_examples=40, image_size=32, seed=0)
    >>> out["images"].shape, out["images"].dtype
    ((8, 32, 32, 3), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np

from dfjax.data.base import SPLITS
from dfjax.data.face_render.camera import camera
from dfjax.data.face_render.manipulations import (
    DEFAULT_SWAP_EXPOSURE,
    face_swap,
    generator_upsample,
    skin_smoothing,
)
from dfjax.data.face_render.render import (
    SCENE_KEYS,
    Params,
    render_faces,
    sample_appearances,
    sample_identities,
)

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 256
MIN_EXAMPLES = 10
DEFAULT_DIFFICULTY = 0.15  # cnn7 (8 epochs, 6000 train): ~85% clean test accuracy
MAX_SWAP_EXPOSURE = 0.5
IMAGES_PER_IDENTITY = 4  # two reals and two fakes per identity
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}
METHODS = ("none", "swap", "upsample", "smooth")  # index = the `method` code
_IDENTITIES_PER_CHUNK = 64  # generation batch: 256 images


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


def _take(params: Params, index: np.ndarray) -> Params:
    return {k: v[index] for k, v in params.items()}


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
            donor_params = {**sub, **{k: v for k, v in donors.items() if k not in SCENE_KEYS}}
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
