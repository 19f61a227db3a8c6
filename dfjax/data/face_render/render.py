"""Procedural faces: identity and appearance sampling, and a batched numpy renderer.

An identity (`sample_identities`) is what stays fixed for a person: head shape, skin,
hair, eyes, brows, nose, mouth, and the scene around the face (background, clothes:
`SCENE_KEYS`). An appearance (`sample_appearances`) is what changes between two
photos of that person: pose, light, expression, exposure, white balance.
`render_faces` draws both as antialiased layers (background, body, head with a
narrowing jaw, eyes, brows, nose, mouth, hair), lights the head as a shaded sphere
under a global gradient, and adds a fine pore-scale texture on the uncovered skin. It
also returns the head and skin coverage and the face-frame coordinates, which the
manipulations (manipulations.py) use to place their traces.

Example:
    >>> import numpy as np
    >>> from dfjax.data.face_render import render_faces, sample_appearances, sample_identities
    >>> rng = np.random.default_rng(0)
    >>> params = {**sample_identities(rng, 2), **sample_appearances(rng, 2)}
    >>> render_faces(params, 32, rng)["image"].shape
    (2, 32, 32, 3)
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from dfjax.data.face_render._drawing import coverage, ellipse_sd, paint, per_image

Params = dict[str, np.ndarray]
# identity parameters of the scene around the face: a face swap's donor keeps the target's
SCENE_KEYS = ("bg1", "bg2", "bg_angle", "bg_texture", "clothes")

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
    p = {k: (per_image(v) if v.ndim == 1 else v) for k, v in params.items()}
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
    paint(image, coverage(ellipse_sd(x, y, 0.0, 1.1, 1.0, 0.5), px), params["clothes"])
    neck = coverage(np.maximum(np.abs(x) - p["neck_w"], 0.2 - y), px)
    paint(image, neck, params["skin"] * 0.8)
    style = p["hair_style"]
    hair_colour = params["hair"]
    is_long = (style == 2).astype(np.float32)
    long_hair = coverage(ellipse_sd(x, y, 0.0, 0.2, a * 1.28, hb * 1.15), px) * is_long
    paint(image, long_hair, hair_colour * 0.85)
    ax = np.abs(x)
    paint(image, coverage(ellipse_sd(ax, y, a - 0.01, 0.02, 0.07, 0.12), px), params["skin"] * 0.92)

    # Head with a narrowing jaw, skin texture.
    narrowing = 1.0 - p["jaw"] * np.clip(y / hb, 0.0, 1.0) ** 2
    head = coverage(ellipse_sd(x / narrowing, y, 0.0, 0.0, a, hb), px)
    paint(image, head, params["skin"])

    # Eyes: outline, whites, iris, pupil, catchlight.
    fx = x - p["yaw"]
    side = np.where(fx < 0, -1.0, 1.0).astype(np.float32)
    ex, ey = fx - side * p["eye_x"], y - p["eye_y"]
    ew, eh = p["eye_w"], p["eye_w"] * p["eye_h"] * p["eye_open"]
    outline_sd = ellipse_sd(ex, ey, 0.0, 0.0, ew + 0.012, eh + 0.008)
    paint(image, coverage(outline_sd, px) * 0.8, params["skin"] * 0.35)
    whites = coverage(ellipse_sd(ex, ey, 0.0, 0.0, ew, eh), px)
    paint(image, whites, np.full((b, 3), 0.93, np.float32))
    gx, gy = p["gaze_x"] * ew * 0.5, p["gaze_y"] * eh
    iris_r = p["iris_r"] * ew
    eye_dist = np.sqrt((ex - gx) ** 2 + (ey - gy) ** 2)
    paint(image, coverage(eye_dist - iris_r, px) * whites, params["iris"])
    paint(image, coverage(eye_dist - iris_r * 0.45, px) * whites, np.full((b, 3), 0.03, np.float32))
    glint = np.sqrt((ex - gx + iris_r * 0.35) ** 2 + (ey - gy + iris_r * 0.35) ** 2)
    paint(image, coverage(glint - iris_r * 0.18, px) * whites, np.ones((b, 3), np.float32))

    # Brows.
    by = ey + p["brow_h"] + p["brow_raise"] + p["brow_tilt"] * side * ex * 0.5
    brow = coverage(ellipse_sd(ex, by - 0.04 * (ex / ew) ** 2, 0.0, 0.0, ew * 1.25,
                               p["brow_t"]), px)
    brow_colour = hair_colour * params["brow_dark"][:, None]
    paint(image, brow * 0.9, brow_colour)

    # Nose: a side shadow, a lit tip, nostrils.
    nx, ny = fx, y - p["nose_y"]
    shadow_side = np.where(p["light_x"] > 0, -1.0, 1.0).astype(np.float32)
    ridge = np.exp(-((nx - shadow_side * p["nose_w"]) / 0.02) ** 2) * np.clip(
        1.0 - np.abs(ny + 0.1) / 0.13, 0.0, 1.0)
    paint(image, ridge * 0.35, params["skin"] * 0.6)
    nostril = coverage(ellipse_sd(np.abs(nx), ny, p["nose_w"] * 0.6, 0.0, p["nose_w"] * 0.4,
                                  0.013), px)
    paint(image, nostril * 0.7, params["skin"] * 0.35)

    # Mouth: lips bent by the smile, an open dark interior, the lip line.
    mx = fx / p["mouth_w"]
    my = y - p["mouth_y"] - p["smile"] * 0.04 * (1.0 - mx**2)
    opening = p["mouth_open"]
    paint(image, coverage(ellipse_sd(fx, my, 0.0, 0.0, p["mouth_w"], p["lip_h"] + opening), px),
          params["lip"] * params["skin"] * 1.3)
    inner = coverage(ellipse_sd(fx, my, 0.0, 0.0, p["mouth_w"] * 0.8, opening + 0.004), px)
    paint(image, inner * 0.85, np.full((b, 3), 0.12, np.float32) * params["lip"] * 2)

    # Hair on top: a cap down to a wavy hairline that drops at the temples.
    hairline = p["hairline"] + 0.05 * (style == 3).astype(np.float32) + p["hair_wave"] * np.sin(
        p["hair_freq"] * x + p["hair_phase"]) + 0.5 * (x / a) ** 2
    cap_sd = np.maximum(ellipse_sd(x, y, 0.0, -0.02, a * p["hair_volume"],
                                   hb * p["hair_volume"]), y - hairline)
    hair = coverage(cap_sd, px) * np.where(style == 0, np.float32(0.3), np.float32(1.0))
    strands = 1.0 + 0.12 * np.sin(70.0 * x + 9.0 * y + p["hair_phase"])
    paint(image, hair, hair_colour[:, None, None, :] * strands[..., None])

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
