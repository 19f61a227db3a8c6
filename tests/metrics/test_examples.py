import cv2
import numpy as np

from dfjax.metrics.examples import gallery, per_example, png


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]


def test_per_example_probabilities_follow_the_logits():
    """Two-logit rows [0, 0], [0, 10], [10, 0] give fake probabilities 0.5, ~1, ~0."""
    logits = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0]], np.float32)
    out = per_example(np.array([4, 7, 9]), np.array([1, 1, 0]), logits, logits[::-1])
    np.testing.assert_allclose(out["p_fake_clean"], [0.5, 1, 0], atol=1e-4)
    np.testing.assert_allclose(out["p_fake_adv"], [0, 1, 0.5], atol=1e-4)
    assert out["index"].tolist() == [4, 7, 9]


def test_png_round_trips_rgb_to_8_bits():
    """Channel order and values survive encoding, within 8-bit rounding."""
    image = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(_decode(png(image)) / 255, image, atol=0.5 / 255 + 1e-6)


def test_gallery_shows_flipped_examples_first_and_amplifies_the_perturbation():
    """Examples 2 and 3 were flipped by the attack: they come first, then 0 and 1 (in
    evaluation order); the perturbation image is 0.5 + delta / (2 eps)."""
    n, eps = 5, 4 / 255
    images = np.full((n, 4, 4, 3), 0.5, np.float32)
    x_adv = images.copy()
    x_adv[:, 0, 0, 0] += eps  # +eps on one pixel -> 1.0 in the amplified image
    examples = {"index": np.arange(n) + 10, "label": np.ones(n, np.int64),
                "p_fake_clean": np.array([0.9, 0.8, 0.9, 0.7, 0.2]),
                "p_fake_adv": np.array([0.9, 0.6, 0.1, 0.3, 0.1])}
    shown = gallery(examples, images, x_adv, eps)
    assert [g["index"] for g in shown] == [12, 13, 10, 11]
    delta = _decode(shown[0]["perturbation_png"])
    assert delta[0, 0, 0] == 255 and delta[1, 1, 0] == 128
    assert gallery(examples, images, images, 0.0) == []
