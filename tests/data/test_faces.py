import numpy as np

from dfjax.data.faces import Box, FaceDetector, FaceTracker, crop_face


def test_crop_face_pads_outside_the_image():
    image = np.full((40, 60, 3), 200, np.uint8)
    crop = crop_face(image, Box(-10, -10, 20, 20), size=16, margin=1.3)
    assert crop.shape == (16, 16, 3)
    assert crop[0, 0].max() == 0 and crop[-1, -1].min() == 200


def test_detects_and_tracks_a_rendered_face():
    from dfjax.data.synthetic_videos import render_pair

    real, _, _ = render_pair(np.random.SeedSequence(2), clip_frames=4, frame_size=160,
                             strength=0.5, detector=FaceDetector())
    big = np.zeros((360, 640, 3), np.uint8)
    big[100:260, 300:460] = real[0]
    detector = FaceDetector(detect_size=480)
    box = detector.detect(big)
    assert box is not None
    cx, cy = box.center
    assert 300 < cx < 460 and 100 < cy < 260
    near = detector.detect_near(big, box)
    assert near is not None and abs(near.center[0] - cx) < box.w / 3
    tracker = FaceTracker(detector)
    assert tracker(big) is not None and tracker(big) is not None and tracker.tracked == 1
    assert detector.detect(np.full((200, 200, 3), 128, np.uint8)) is None
