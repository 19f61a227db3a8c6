"""JPEG compression as a defence (Dziugaite et al. 2016, arXiv:1608.00853; Das et al. 2017):
a real JPEG round trip through OpenCV's codec, attacked by BPDA with the identity
(Athalye et al. 2018 took it to 0% robust accuracy that way)."""

from __future__ import annotations

import cv2
import jax
import numpy as np

from dfjax.types import Images


def check_quality(quality) -> None:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"option quality must be an int in 1..100, got {quality!r}")


def jpeg_round_trip(images: np.ndarray, quality: int) -> np.ndarray:
    """float32 [b, h, w, c] in [0, 1] -> the same images encoded as JPEG at `quality` and
    decoded (pixels quantised to 1/255 first, as any saved image is); c = 1 or 3."""
    out = np.empty(images.shape, np.float32)
    for i, image in enumerate(np.asarray(images)):
        u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        bgr = u8[..., ::-1] if u8.shape[-1] == 3 else u8[..., 0]
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(bgr),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("OpenCV could not encode an image as JPEG")
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        decoded = decoded[..., ::-1] if decoded.ndim == 3 else decoded[..., None]
        out[i] = decoded.astype(np.float32) / 255.0
    return out


def jpeg(x: Images, keys: jax.Array, *, quality: int) -> Images:
    """The JPEG round trip of x inside a jitted function (a host callback: not
    differentiable; attack it with BPDA)."""
    del keys
    return jax.pure_callback(lambda a: jpeg_round_trip(a, quality),
                             jax.ShapeDtypeStruct(x.shape, x.dtype), x,
                             vmap_method="broadcast_all")
