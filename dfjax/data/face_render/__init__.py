"""Procedural faces, real and manipulated: the renderer behind the synthetic datasets
(`synthetic_faces`, `synthetic_videos`).

One concept per module:

* render: identity and appearance sampling, and the renderer (`render_faces`);
* manipulations: the fakes' traces (`face_swap`, `generator_upsample`,
  `skin_smoothing`);
* camera: the capture pipeline real and fake images share (`camera`);
* splits: the synthetic_faces splits (`generate_split_arrays`) and the checks of its
  options.

Everything is numpy and OpenCV, and every random draw comes from a
`np.random.Generator` passed in: the same generator state gives the same images.
"""

from dfjax.data.face_render.camera import camera
from dfjax.data.face_render.manipulations import (
    DEFAULT_SWAP_EXPOSURE,
    SWAP_EXPOSURE_SPREAD,
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
from dfjax.data.face_render.splits import (
    DEFAULT_DIFFICULTY,
    IMAGES_PER_IDENTITY,
    MAX_IMAGE_SIZE,
    MAX_SWAP_EXPOSURE,
    METHODS,
    MIN_EXAMPLES,
    MIN_IMAGE_SIZE,
    SPLIT_FRACTIONS,
    artifact_strength,
    check_difficulty,
    check_image_size,
    check_swap_exposure,
    generate_split_arrays,
    split_sizes,
)

__all__ = [
    "DEFAULT_DIFFICULTY",
    "DEFAULT_SWAP_EXPOSURE",
    "IMAGES_PER_IDENTITY",
    "MAX_IMAGE_SIZE",
    "MAX_SWAP_EXPOSURE",
    "METHODS",
    "MIN_EXAMPLES",
    "MIN_IMAGE_SIZE",
    "SCENE_KEYS",
    "SPLIT_FRACTIONS",
    "SWAP_EXPOSURE_SPREAD",
    "Params",
    "artifact_strength",
    "camera",
    "check_difficulty",
    "check_image_size",
    "check_swap_exposure",
    "face_swap",
    "generate_split_arrays",
    "generator_upsample",
    "render_faces",
    "sample_appearances",
    "sample_identities",
    "skin_smoothing",
    "split_sizes",
]
