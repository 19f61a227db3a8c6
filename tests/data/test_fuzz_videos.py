"""Video files a user hands dfjax: every bad one is a VideoDecodeError naming the file (a
named skip in the DFDC report), never an OpenCV traceback, never an unbounded read.

Fuzzed with hypothesis (deterministic: derandomize, no example database).
"""

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dfjax.data import video
from dfjax.data.video import (
    VideoDecodeError,
    VideoTooLargeError,
    is_video_container,
    read_sampled_frames,
    sample_frame_indices,
    video_face_crops,
    write_video,
)

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FRAMES = 8


def _frames(n: int, size: int = 32) -> list[np.ndarray]:
    return [np.full((size, size, 3), 20 * i, np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """An 8-frame mp4v MP4, the same as MJPG in AVI, a 1-frame MP4, a 0-frame MP4."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "eight.mp4", _frames(FRAMES))
    writer = cv2.VideoWriter(str(folder / "eight.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (32, 32))
    for frame in _frames(FRAMES):
        writer.write(frame)
    writer.release()
    write_video(folder / "one.mp4", _frames(1))
    cv2.VideoWriter(str(folder / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25,
                    (32, 32)).release()
    return folder


def _check(path, frames_per_video: int):
    """read_sampled_frames' contract: frames at sampled indices of the declared count,
    RGB uint8 of one shape; or a VideoDecodeError whose message names the file."""
    try:
        frames, declared = read_sampled_frames(path, frames_per_video)
    except VideoDecodeError as e:
        event(type(e).__name__)  # shown by --hypothesis-show-statistics
        assert path.name in str(e)
        return
    event(f"decoded {len(frames)} frame(s)")
    assert 1 <= len(frames) <= frames_per_video and 0 < declared <= video.MAX_VIDEO_FRAMES
    wanted = set(sample_frame_indices(declared, frames_per_video).tolist())
    for index, frame in frames:
        assert index in wanted and frame.dtype == np.uint8 and frame.shape[2] == 3


@FUZZ
@given(source=st.sampled_from(["eight.mp4", "eight.avi"]),
       edits=st.lists(st.tuples(st.sampled_from(["flip", "cut", "junk"]), st.floats(0, 1),
                                st.binary(min_size=1, max_size=32)), min_size=1, max_size=3),
       frames_per_video=st.integers(1, 10))
def test_mutated_videos_decode_or_raise_a_named_error(clips, mutate, tmp_path_factory, source,
                                                      edits, frames_per_video):
    """MP4 and AVI files with bytes flipped, cut or inserted: sampled frames or a
    VideoDecodeError naming the file; no other exception."""
    data = mutate((clips / source).read_bytes(), edits)
    path = tmp_path_factory.getbasetemp() / f"mutated{source[-4:]}"
    path.write_bytes(data)
    _check(path, frames_per_video)


@FUZZ
@given(head=st.sampled_from([b"", b"\x00\x00\x00\x18ftypmp42", b"\x1a\x45\xdf\xa3",
                             b"RIFF\x00\x00\x00\x00AVI ", b"#EXTM3U\n", b"ffconcat version 1.0\n"]),
       body=st.binary(max_size=400))
def test_random_bytes_as_a_video_raise_a_named_error(tmp_path_factory, head, body):
    """Random bytes, alone or behind a container signature or a playlist header: a
    VideoDecodeError naming the file (or frames, should they decode)."""
    path = tmp_path_factory.getbasetemp() / "random.mp4"
    path.write_bytes(head + body)
    _check(path, 4)


def test_playlists_never_reach_ffmpeg(tmp_path, monkeypatch):
    """An HLS or concat playlist named .mp4 (FFmpeg would open the files or URLs it
    lists) is refused by its first bytes; cv2.VideoCapture is never called."""
    def no_capture(*args):
        raise AssertionError("FFmpeg was asked to open a playlist")

    monkeypatch.setattr(video.cv2, "VideoCapture", no_capture)
    playlists = {"hls.mp4": b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n/etc/passwd\n",
                 "concat.mp4": b"ffconcat version 1.0\nfile '/etc/passwd'\n"}
    for name, text in playlists.items():
        assert not is_video_container(text)
        (tmp_path / name).write_bytes(text)
        with pytest.raises(VideoDecodeError, match=f"{name} is not a"):
            read_sampled_frames(tmp_path / name, 4)


def test_frame_counts_zero_one_and_wrong_container(clips, tmp_path):
    """A 0-frame MP4 is a VideoDecodeError; a 1-frame MP4 gives frame 0; AVI content
    named .mp4 is read by its content; a folder named .mp4 is a VideoDecodeError."""
    with pytest.raises(VideoDecodeError, match="zero.mp4"):
        read_sampled_frames(clips / "zero.mp4", 4)
    frames, declared = read_sampled_frames(clips / "one.mp4", 4)
    assert declared == 1 and [i for i, _ in frames] == [0]
    (tmp_path / "avi_named.mp4").write_bytes((clips / "eight.avi").read_bytes())
    frames, declared = read_sampled_frames(tmp_path / "avi_named.mp4", 3)
    assert declared == FRAMES and [i for i, _ in frames] == [0, 4, 7]
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(VideoDecodeError, match="folder.mp4"):
        read_sampled_frames(tmp_path / "folder.mp4", 4)


def test_too_many_frames_or_pixels_are_refused_before_decoding(clips, monkeypatch):
    """Over MAX_VIDEO_FRAMES declared frames or MAX_FRAME_PIXELS declared pixels: a
    VideoTooLargeError (a VideoDecodeError) naming the file, no frame grabbed."""
    def no_grab(self):
        raise AssertionError("a too-large video was decoded")

    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", FRAMES - 1)
    with pytest.raises(VideoTooLargeError, match="eight.mp4 declares 8 frames"):
        read_sampled_frames(clips / "eight.mp4", 4)
    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", 100)
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 32 * 32 - 1)
    with pytest.raises(VideoTooLargeError, match="eight.mp4 declares frames of 1024 pixels"):
        read_sampled_frames(clips / "eight.mp4", 4)


def test_frames_past_the_real_end_are_listed_as_undecoded(clips, monkeypatch):
    """A container declaring 16 frames that holds 8 (as a variable-frame-rate file may):
    the 8 frames are read, and the sampled indices past the end are `undecoded_frames`."""
    real = video._declared

    def doubled(capture, prop):
        value = real(capture, prop)
        return 2 * value if prop == cv2.CAP_PROP_FRAME_COUNT else value

    monkeypatch.setattr(video, "_declared", doubled)
    faces = video_face_crops(clips / "eight.mp4", frames_per_video=4, image_size=8)
    assert faces.num_frames == 16
    assert faces.missed_frames == [0, 5]  # decoded, no face in a flat frame
    assert faces.undecoded_frames == [10, 15]
