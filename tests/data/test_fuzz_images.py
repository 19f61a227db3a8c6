"""Image files a user hands dfjax: every bad one is a named skip, never a crash or a hang.

Fuzzed with hypothesis (deterministic: derandomize, no example database); the cases a
fuzzer rarely builds (a forged 100000 x 100000 header, 16-bit, CMYK, a FIFO) are
written out one by one.
"""

import io
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dfjax.config import DatasetSpec
from dfjax.data import _images, load_dataset
from dfjax.data._images import MAX_IMAGE_PIXELS, declared_size, read_image
from tests.data.conftest import write_jpeg

READ_REASONS = {"missing", "unreadable", "empty", "too_large", "truncated", "undecodable"}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encoded(kind: str, height: int, width: int, channels: int, sixteen_bit: bool) -> bytes:
    """A small valid image file's bytes: a smooth gradient, `channels` in {1, 3, 4}."""
    ramp = np.linspace(0, 255, height * width * channels).reshape(height, width, channels)
    image = ramp.astype(np.uint8)
    if sixteen_bit and kind == "png":
        image = image.astype(np.uint16) * 257
    ok, data = cv2.imencode(f".{kind}", image[..., 0] if channels == 1 else image)
    assert ok
    return data.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def forged_png(width: int, height: int) -> bytes:
    """A well-formed PNG header declaring width x height RGB, with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def forged_jpeg(width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) declares width x height, then ends."""
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return (b"\xff\xd8" + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + b"\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9")


def forged_bmp(width: int, height: int) -> bytes:
    """A BMP header (BITMAPINFOHEADER, 24 bit) declaring width x height, no pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def _check_result(result):
    """What read_image may return: an RGB uint8 image, or None and a known reason."""
    image, reason = result
    event(f"read_image -> {reason or 'decoded'}")  # shown by --hypothesis-show-statistics
    if image is None:
        assert reason in READ_REASONS, reason
    else:
        assert reason is None and image.dtype == np.uint8
        assert image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] * image.shape[1] <= MAX_IMAGE_PIXELS


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_images")


mutations = st.lists(st.tuples(st.sampled_from(["flip", "cut", "junk"]),
                               st.floats(0, 1), st.binary(min_size=1, max_size=4)),
                     max_size=3)


@FUZZ
@given(kind=st.sampled_from(["jpg", "png", "bmp"]), height=st.integers(1, 24),
       width=st.integers(1, 24), channels=st.sampled_from([1, 3, 4]),
       sixteen_bit=st.booleans(), edits=mutations)
def test_mutated_image_files_decode_or_are_skipped_by_reason(
        scratch, mutate, kind, height, width, channels, sixteen_bit, edits):
    """Valid JPEG/PNG/BMP files, as written or with bytes flipped, cut or inserted: an
    RGB image or a known skip reason from read_image, never an exception."""
    data = mutate(_encoded(kind, height, width, channels, sixteen_bit), edits)
    path = scratch / f"mutated.{kind}"
    path.write_bytes(data)
    _check_result(read_image(path))


@FUZZ
@given(magic=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM"]),
       body=st.binary(max_size=600))
def test_random_bytes_behind_an_image_signature_are_skipped(scratch, magic, body):
    """Random bytes, alone or behind a JPEG/PNG/BMP signature: never an exception."""
    path = scratch / "random.jpg"
    path.write_bytes(magic + body)
    _check_result(read_image(path))


@FUZZ
@given(kind=st.sampled_from(["png", "jpeg", "bmp"]),
       width=st.integers(1, 65535), height=st.integers(1, 65535))
def test_declared_size_is_read_from_the_header_and_large_ones_never_decode(
        scratch, monkeypatch, kind, width, height):
    """A header's declared size is parsed without decoding; one over MAX_IMAGE_PIXELS is
    skipped as "too_large" and cv2.imdecode is never called for it."""
    data = {"png": forged_png, "jpeg": forged_jpeg, "bmp": forged_bmp}[kind](width, height)
    assert declared_size(data) == (width, height)
    path = scratch / f"forged.{kind}"
    path.write_bytes(data)
    if width * height > MAX_IMAGE_PIXELS:
        def no_decoding(*args):
            raise AssertionError("a too-large image reached the decoder")
        with monkeypatch.context() as patch:
            patch.setattr(_images.cv2, "imdecode", no_decoding)
            assert read_image(path) == (None, "too_large")
    else:
        _check_result(read_image(path))


def test_huge_declared_png_is_too_large_not_an_opencv_error(tmp_path):
    """The PNG header claiming 100000 x 100000 from the issue: a "too_large" skip (OpenCV
    itself raised cv2.error on it)."""
    path = tmp_path / "huge.png"
    path.write_bytes(forged_png(100_000, 100_000))
    assert read_image(path) == (None, "too_large")


def test_odd_but_valid_images_become_rgb_uint8(tmp_path):
    """1x1, grayscale, 16-bit PNG, RGBA, and a PNG named .jpg decode to uint8 [h, w, 3]
    with the expected pixel values."""
    cases = {
        "one.png": (np.full((1, 1, 3), 7, np.uint8), [7, 7, 7]),
        "gray.png": (np.full((4, 5), 200, np.uint8), [200, 200, 200]),
        "deep.png": (np.full((3, 3, 3), 257 * 40, np.uint16), [40, 40, 40]),
        "alpha.png": (np.dstack([np.full((2, 2, 3), (10, 20, 30), np.uint8),
                                 np.zeros((2, 2), np.uint8)]), [30, 20, 10]),
    }
    for name, (pixels, rgb) in cases.items():
        assert cv2.imwrite(str(tmp_path / name), pixels)
        image, reason = read_image(tmp_path / name)
        assert reason is None and image.dtype == np.uint8 and image.shape[2] == 3, name
        assert image[0, 0].tolist() == rgb, name
    (tmp_path / "png_named.jpg").write_bytes((tmp_path / "gray.png").read_bytes())
    assert read_image(tmp_path / "png_named.jpg")[0].shape == (4, 5, 3)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    """A CMYK JPEG (written by Pillow; OpenCV cannot write one) reads as uint8 [h, w, 3]."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(buffer, "JPEG")  # pure red
    (tmp_path / "cmyk.jpg").write_bytes(buffer.getvalue())
    image, reason = read_image(tmp_path / "cmyk.jpg")
    assert reason is None and image.shape == (4, 6, 3) and image.dtype == np.uint8


def test_files_that_are_not_images_are_named_reasons(tmp_path, monkeypatch):
    """Zero bytes -> "empty", a cut JPEG -> "truncated", text -> "undecodable", a folder or
    a FIFO named .jpg -> "missing" (a FIFO is never opened, so nothing blocks), a file
    over MAX_IMAGE_BYTES -> "too_large" unread, a read error -> "unreadable"."""
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert read_image(tmp_path / "zero.jpg") == (None, "empty")
    cut = _encoded("jpg", 16, 16, 3, False)
    (tmp_path / "cut.jpg").write_bytes(cut[: len(cut) // 2])
    assert read_image(tmp_path / "cut.jpg") == (None, "truncated")
    (tmp_path / "text.png").write_text("hello, not a picture")
    assert read_image(tmp_path / "text.png") == (None, "undecodable")
    (tmp_path / "folder.jpg").mkdir()
    assert read_image(tmp_path / "folder.jpg") == (None, "missing")
    os.mkfifo(tmp_path / "fifo.jpg")
    assert read_image(tmp_path / "fifo.jpg") == (None, "missing")
    write_jpeg(tmp_path / "big.jpg", np.random.default_rng(0), bright=True)
    monkeypatch.setattr(_images, "MAX_IMAGE_BYTES", 64)
    assert read_image(tmp_path / "big.jpg") == (None, "too_large")
    monkeypatch.undo()

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "read_bytes", denied)
    assert read_image(tmp_path / "big.jpg") == (None, "unreadable")


def test_every_bad_file_in_a_folder_is_skipped_by_name(tmp_path):
    """image_folder over good images plus one file of each bad kind: exactly the good
    ones become examples and every bad one is named in the preparation report."""
    rng = np.random.default_rng(5)
    root = tmp_path / "mine"
    for name, bright in (("real", True), ("fake", False)):
        for i in range(5):
            write_jpeg(root / name / f"{i}.jpg", rng, bright=bright)
    bad = {"empty.jpg": b"", "huge.png": forged_png(100_000, 100_000),
           "text.jpg": b"not an image", "cut.png": _encoded("png", 8, 8, 3, False)[:40]}
    for name, data in bad.items():
        (root / "fake" / name).write_bytes(data)
    spec = DatasetSpec(name="image_folder", image_size=8, num_examples=1000)
    splits = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=root)
    assert sum(len(splits.split(s)) for s in ("train", "validation", "test")) == 10
    report = str(splits.info["report"])
    for name in bad:
        assert f"fake/{name}" in report, name


@FUZZ
@given(height=st.one_of(st.integers(1, 48), st.just(3000)),
       width=st.one_of(st.integers(1, 48), st.just(3000)), seed=st.integers(0, 2**16))
def test_face_cropper_on_any_image_shape_crops_or_finds_none(height, width, seed):
    """face_cropper on images from 1x1 to 1x3000 strips: None or a [size, size, 3] crop.
    (Shrinking a 1x3000 strip for detection asked OpenCV for a 0-pixel side before.)"""
    from dfjax.data.faces import face_cropper

    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = face_cropper(size=8)(image)
    assert crop is None or crop.shape == (8, 8, 3)


def test_crop_face_of_a_zero_size_box_is_one_pixel_resized():
    """A box of side 0 crops one pixel (resized), where OpenCV raised on an empty crop."""
    from dfjax.data.faces import Box, crop_face

    image = np.full((5, 5, 3), 90, np.uint8)
    crop = crop_face(image, Box(2, 2, 0, 0), size=4)
    assert crop.shape == (4, 4, 3) and np.all(crop == 90)


def test_jpeg_header_walk_is_bounded():
    """Comment segments before the frame header: a few are walked past to the declared
    size; more than _JPEG_MAX_SEGMENTS make the file undecodable (never a long walk)."""
    comment = b"\xff\xfe\x00\x04hi"
    data = forged_jpeg(40, 30)
    for count, expected in ((10, (40, 30)), (_images._JPEG_MAX_SEGMENTS + 1, None)):
        assert declared_size(data[:2] + comment * count + data[2:]) == expected
