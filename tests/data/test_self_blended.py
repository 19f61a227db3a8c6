import numpy as np

from dfjax.config import DatasetSpec
from dfjax.data import load_dataset
from dfjax.data.self_blended import blend_mask, default_face_box, self_blend


def test_mask_is_soft_and_inside_the_face():
    rng = np.random.default_rng(0)
    mask = blend_mask(64, 64, default_face_box(64), rng)
    assert mask.shape == (64, 64) and 0.0 <= mask.min() and mask.max() <= 1.0
    assert mask[32, 32] > mask[2, 2] and mask[2, 2] < 0.05
    assert 0.0 < np.mean((mask > 0.02) & (mask < mask.max() * 0.98))  # a soft ramp


def test_self_blend_changes_only_the_face_region_and_is_deterministic():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    a = self_blend(image, np.random.default_rng(3))
    b = self_blend(image, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    diff = np.abs(a.astype(int) - image.astype(int)).mean(axis=-1)
    assert diff[20:44, 20:44].mean() > 3 * diff[:4, :4].mean() + 0.5


def test_dataset_pairs_each_real_with_its_blend(tmp_path):
    spec = DatasetSpec(name="self_blended", image_size=32, num_examples=40)
    splits = load_dataset(spec, data_dir=tmp_path)
    source = load_dataset(DatasetSpec(name="synthetic_faces", image_size=32, num_examples=40),
                          data_dir=tmp_path)
    for name in ("train", "validation", "test"):
        split, src = splits.split(name), source.split(name)
        assert len(split) == 2 * int((src.labels == 0).sum())
        np.testing.assert_array_equal(split.labels[::2], 0)
        np.testing.assert_array_equal(split.labels[1::2], 1)
        np.testing.assert_array_equal(split.groups[::2], split.groups[1::2])
        np.testing.assert_array_equal(split.images[::2], src.images[src.labels == 0])
        assert np.any(split.images[::2] != split.images[1::2])
