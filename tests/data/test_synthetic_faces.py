"""synthetic_faces: determinism, shapes, identity splits, artifacts, the TFDS cache."""

import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import DATASETS, SPLITS
from dfjax.data import face_render as fr
from dfjax.data import synthetic_faces

SMALL = dict(num_examples=200, image_size=32)


def _spec(**kw) -> DatasetSpec:
    return DatasetSpec(name="synthetic_faces", **{**SMALL, **kw})


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The 200-example, 32-pixel dataset prepared through TFDS and read back."""
    data_dir = tmp_path_factory.mktemp("data")
    return DATASETS.get("synthetic_faces").load(_spec(), data_dir=data_dir), data_dir


def _periodicity(images: np.ndarray) -> np.ndarray:
    """[n] mean |neighbour difference| within even pixel pairs over across them (face crop)."""
    gray = images.astype(np.float32).mean(-1)
    s = gray.shape[1]
    crop = gray[:, s // 4: 3 * s // 4, s // 4: 3 * s // 4]
    dx, dy = np.abs(np.diff(crop, axis=2)), np.abs(np.diff(crop, axis=1))
    within = dx[:, :, 0::2].mean((1, 2)) + dy[:, 0::2].mean((1, 2))
    across = dx[:, :, 1::2].mean((1, 2)) + dy[:, 1::2].mean((1, 2))
    return within / across


def test_registered():
    assert "synthetic_faces" in DATASETS


def test_same_spec_same_arrays_other_seed_differs():
    a = fr.generate_split_arrays("validation", seed=3, **SMALL)
    b = fr.generate_split_arrays("validation", seed=3, **SMALL)
    c = fr.generate_split_arrays("validation", seed=4, **SMALL)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])


def test_shapes_dtypes_balance_and_identity_splits(loaded):
    splits, _ = loaded
    sizes = {name: len(splits.split(name)) for name in SPLITS}
    assert sizes == {"train": 120, "validation": 40, "test": 40}
    groups = []
    for name in SPLITS:
        split = splits.split(name)
        assert split.images.shape == (sizes[name], 32, 32, 3)
        assert split.images.dtype == np.uint8
        assert split.images.std() > 10  # real content, not a constant
        assert set(np.unique(split.labels)) == {0, 1}
        assert (split.labels == 1).sum() == (split.labels == 0).sum()
        groups.append(set(split.groups.tolist()))
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    report = splits.info["report"]
    assert sum(report["train"]["manipulations"].values()) == report["train"]["fake"] == 60


def test_split_sizes_are_60_20_20():
    assert fr.split_sizes(10_000) == {"train": 6000, "validation": 2000, "test": 2000}
    assert sum(fr.split_sizes(1234).values()) == 1234


def test_loaded_matches_direct_generation(loaded):
    splits, _ = loaded
    direct = fr.generate_split_arrays("test", difficulty=fr.DEFAULT_DIFFICULTY, **SMALL)
    np.testing.assert_array_equal(splits.test.images, direct["images"])
    np.testing.assert_array_equal(splits.test.groups, direct["groups"])


@pytest.mark.parametrize("size", [16, 31, 257, 512])
def test_image_size_outside_limits_raises(size, tmp_path):
    with pytest.raises(ValueError, match="32 to 256"):
        DATASETS.get("synthetic_faces").load(_spec(image_size=size), data_dir=tmp_path)


@pytest.mark.parametrize("difficulty", [0.0, -0.5, 1.5])
def test_bad_difficulty_raises(difficulty, tmp_path):
    spec = _spec(options={"difficulty": difficulty})
    with pytest.raises(ValueError, match="difficulty"):
        DATASETS.get("synthetic_faces").load(spec, data_dir=tmp_path)


@pytest.mark.parametrize("options, match", [({"swap_exposure": 0.6}, "swap_exposure"),
                                            ({"swap_exposure": -0.1}, "swap_exposure"),
                                            ({"dificulty": 0.2}, "no option")])
def test_bad_option_raises(options, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        DATASETS.get("synthetic_faces").load(_spec(options=options), data_dir=tmp_path)


def test_data_version_is_part_of_the_spec():
    """A generator change (DATA_VERSIONS) gives new data dirs, detector ids and cell ids."""
    from dfjax.config import DATA_VERSIONS

    assert f'"data_version":"{DATA_VERSIONS["synthetic_faces"]}"' in _spec().canonical()
    assert "data_version" not in DatasetSpec(name="synthetic_videos").canonical()


def test_other_sizes_render():
    for size in (33, 96):
        out = fr.generate_split_arrays("test", num_examples=20, image_size=size)
        assert out["images"].shape == (4, size, size, 3)


def test_upsampled_fakes_show_2x2_periodicity():
    out = fr.generate_split_arrays("train", num_examples=400, image_size=32, difficulty=0.05)
    ratio = _periodicity(out["images"])
    reals = ratio[out["methods"] == 0]
    upsampled = ratio[out["methods"] == fr.METHODS.index("upsample")]
    assert len(upsampled) >= 15
    assert upsampled.mean() < reals.mean() - 0.15


def test_artifacts_fade_with_difficulty():
    """The same faces with subtler artifacts: periodicity closer to the reals'."""
    gaps = []
    for difficulty in (0.05, 1.0):
        out = fr.generate_split_arrays("train", num_examples=400, image_size=32,
                                       difficulty=difficulty)
        ratio = _periodicity(out["images"])
        up = out["methods"] == fr.METHODS.index("upsample")
        gaps.append(ratio[out["methods"] == 0].mean() - ratio[up].mean())
    assert gaps[0] > 3 * gaps[1]


def _rendered(n=8, size=48, seed=0):
    rng = np.random.default_rng(seed)
    params = {**fr.sample_identities(rng, n), **fr.sample_appearances(rng, n)}
    return params, fr.render_faces(params, size, rng), rng


def test_smoothing_removes_skin_texture():
    _, target, _ = _rendered()
    out = fr.skin_smoothing(target, np.ones(8, np.float32))

    def texture(images):  # high-frequency energy on the skin
        gray = images.mean(-1)
        lap = 4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] \
            - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]
        skin = target["skin"][:, 1:-1, 1:-1] > 0.99
        return (np.abs(lap) * skin).sum((1, 2)) / skin.sum((1, 2))

    before, after = texture(target["image"]), texture(out)
    assert after.mean() < 0.6 * before.mean() and np.all(after < 0.85 * before)
    assert out.dtype == np.float32


def test_swap_changes_only_the_inner_face_and_leaves_a_colour_step():
    params, target, rng = _rendered()
    donor_params = {**params, **{k: v for k, v in fr.sample_identities(rng, 8).items()
                                 if k in ("skin", "eye_x", "iris", "lip", "hair")}}
    donor = fr.render_faces(donor_params, 48, rng)["image"]
    out = fr.face_swap(target, donor, params, np.ones(8, np.float32), rng)
    changed = np.abs(out - target["image"]).max(-1) > 1e-4
    assert changed[:, 20:30, 20:30].mean() > 0.9  # the centre of the face is replaced
    assert not changed[:, :6].any() and not changed[:, -4:].any()  # hair, body untouched


def test_swap_exposure_brightens_the_inner_face_beyond_an_8_255_budget():
    """The robust cue: with the default exposure jump, the swapped centre is brighter
    than without it by far more than an Linf attacker at 8/255 can undo."""
    params, target, _ = _rendered()
    donor = fr.render_faces(params, 48, np.random.default_rng(1))["image"]
    strength = np.full(8, 0.85, np.float32)
    jumped = fr.face_swap(target, donor, params, strength, np.random.default_rng(2))
    plain = fr.face_swap(target, donor, params, strength, np.random.default_rng(2), exposure=0.0)
    centre = (slice(None), slice(20, 30), slice(20, 30))
    gain = (jumped[centre] - plain[centre]).mean(axis=(1, 2, 3))
    assert np.all(gain > 0.1) and np.all(gain < 0.36)
    outside = (slice(None), slice(0, 4))
    np.testing.assert_array_equal(jumped[outside], plain[outside])


def test_camera_is_shared_and_lossy():
    _, target, rng = _rendered()
    out = fr.camera(target["image"], rng)
    assert out.dtype == np.uint8 and out.shape == target["image"].shape
    error = np.abs(out / 255.0 - target["image"]).mean()
    assert 0.002 < error < 0.05


def test_prepare_is_cached_and_spec_changes_directory(loaded, monkeypatch):
    splits, data_dir = loaded
    entry = DATASETS.get("synthetic_faces")
    builder = entry.builder(_spec(), data_dir=data_dir)
    assert builder.is_prepared()

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a prepared dataset")

    monkeypatch.setattr(synthetic_faces, "generate_split_arrays", fail)
    again = entry.load(_spec(), data_dir=data_dir)
    np.testing.assert_array_equal(again.train.images, splits.train.images)
    directories = {str(entry.builder(spec, data_dir=data_dir).data_dir) for spec in
                   (_spec(), _spec(seed=1), _spec(options={"difficulty": 0.9}))}
    assert len(directories) == 3
