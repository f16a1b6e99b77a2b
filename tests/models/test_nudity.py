"""The NudeNet 320n wrapper: loads offline, decodes outputs right, stays quiet on benign photos.

There are no explicit test images and none may be fetched, so recall on nudity is not
tested. What is tested: the weights load without the network and match their pinned
checksum; the decoding of a hand-made output array (labels, scores, boxes, NMS, the
letterbox border); the shared face photos (read from ``shared/data/faces`` beside the
repository, never copied) and scikit-image's bundled samples, when installed, give no
exposed label while the model finds the faces in them, which checks the letterbox,
channel order and box mapping end to end.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.images.bench_faces import shared_faces_dir
from models.images.nudity import (
    EXPOSED_LABELS,
    INPUT_SIZE,
    LABELS,
    MODEL_SHA256,
    PAD_VALUE,
    FakeNudityDetector,
    Letterbox,
    NudityDetector,
    NudityFinding,
    NudityModelError,
    NudityResult,
    decode,
    letterbox,
    packaged_model_path,
)

SHARED_PHOTOS = [
    "barack_obama/obama.jpg",
    "barack_obama/obama2.jpg",
    "barack_obama/obama3.jpg",
    "joe_biden/biden.jpg",
    "eileen_collins/astronaut.jpg",
]
# scikit-image's bundled sample images (in the wheel; no download). color.png, a colour
# wheel, is left out here: see test_colour_wheel_is_a_known_false_positive.
SKIMAGE_SAMPLES = [
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
]


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def skimage_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


@pytest.fixture(scope="module")
def detector() -> NudityDetector:
    return NudityDetector(num_threads=2)


# --- loading ---------------------------------------------------------------------------


def test_packaged_model_loads_offline_and_matches_its_checksum(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the nudity model tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    path = packaged_model_path()
    assert path.name == "320n.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256
    detector = NudityDetector()
    assert detector.model_path == path
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    findings = detector.detect(Image.fromarray(noise))
    assert isinstance(findings, list)
    assert all(isinstance(f, NudityFinding) for f in findings)


def test_random_noise_gives_well_formed_findings(detector):
    rng = np.random.default_rng(1)
    for shape in [(480, 640, 3), (900, 300, 3), (7, 5, 3)]:
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        for f in detector.detect(image):
            assert f.label in LABELS
            assert NudityDetector.MIN_SCORE <= f.score <= 1.0
            left, top, right, bottom = f.box
            assert 0 <= left < right <= image.width
            assert 0 <= top < bottom <= image.height


def test_other_modes_and_a_grey_image_are_accepted(detector):
    for mode in ["L", "RGBA", "P", "CMYK"]:
        assert isinstance(detector.detect(Image.new(mode, (64, 48))), list)


def test_an_altered_or_foreign_model_file_is_refused(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not an onnx model")
    with pytest.raises(NudityModelError, match="sha256"):
        NudityDetector(fake, sha256="0" * 64)
    with pytest.raises(NudityModelError, match="cannot load"):
        NudityDetector(fake)


def test_a_model_with_other_labels_is_refused(tmp_path):
    import onnx

    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "tiny",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 3, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'cat', 1: 'dog'}"})
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    with pytest.raises(NudityModelError, match="labels"):
        NudityDetector(path)


# --- pre- and post-processing on hand-made data ---------------------------------------


def test_letterbox_centres_the_photo_on_grey():
    photo = Image.new("RGB", (640, 480), (255, 0, 0))
    batch, frame = letterbox(photo)
    assert batch.shape == (1, 3, INPUT_SIZE, INPUT_SIZE)
    assert batch.dtype == np.float32
    assert frame == Letterbox(
        scale_x=0.5, scale_y=0.5, pad_x=0.0, pad_y=40.0, width=640, height=480
    )
    grey = PAD_VALUE / 255
    np.testing.assert_allclose(batch[0, :, :40, :], grey, atol=1e-6)  # border above
    np.testing.assert_allclose(batch[0, :, 280:, :], grey, atol=1e-6)  # border below
    red = np.broadcast_to(np.array([1.0, 0.0, 0.0])[:, None, None], (3, 240, 320))
    np.testing.assert_allclose(batch[0, :, 40:280, :], red, atol=1e-6)


def test_letterbox_keeps_rgb_order():
    photo = Image.new("RGB", (32, 32), (10, 20, 30))
    batch, _ = letterbox(photo)
    np.testing.assert_allclose(batch[0, :, 160, 160], np.array([10, 20, 30]) / 255, atol=1e-6)


# A 640x480 photo sits in the input at scale 0.5 below a 40-pixel border. A box at
# photo pixels (100, 200)-(300, 400) is, in input pixels, centre (100, 190), size 100x100.
FRAME = Letterbox(scale_x=0.5, scale_y=0.5, pad_x=0.0, pad_y=40.0, width=640, height=480)
BREAST = LABELS.index("FEMALE_BREAST_EXPOSED")
BREAST_COVERED = LABELS.index("FEMALE_BREAST_COVERED")
FACE = LABELS.index("FACE_FEMALE")


def hand_made_output() -> np.ndarray:
    output = np.zeros((1, 4 + len(LABELS), 2100), dtype=np.float32)

    def anchor(i: int, box: tuple[float, float, float, float], **scores: float) -> None:
        output[0, :4, i] = box
        for cls, score in scores.items():
            output[0, 4 + int(cls[1:]), i] = score

    anchor(5, (100, 190, 100, 100), **{f"c{BREAST}": 0.9, f"c{BREAST_COVERED}": 0.6})
    anchor(6, (104, 192, 100, 100), **{f"c{BREAST}": 0.7})  # overlaps anchor 5: suppressed
    anchor(7, (104, 192, 100, 100), **{f"c{BREAST_COVERED}": 0.95})  # other label: kept
    anchor(8, (250, 100, 40, 40), **{f"c{FACE}": 0.15})  # under MIN_SCORE: dropped
    anchor(9, (160, 10, 50, 16), **{f"c{BREAST}": 0.99})  # wholly in the border: dropped
    anchor(10, (300, 250, 60, 60), **{f"c{BREAST}": 0.3})  # a second, separate box
    anchor(11, (20, 200, 60, 60), **{f"c{FACE}": 0.8})  # runs off the left edge: clipped
    return output


def test_decode_maps_a_hand_made_output_to_photo_boxes():
    findings = decode(hand_made_output(), FRAME, min_score=0.2, iou=0.45)
    assert [(f.label, round(f.score, 2), f.box) for f in findings] == [
        ("FEMALE_BREAST_COVERED", 0.95, (108, 204, 308, 404)),
        ("FEMALE_BREAST_EXPOSED", 0.9, (100, 200, 300, 400)),
        ("FACE_FEMALE", 0.8, (0, 260, 100, 380)),
        ("FEMALE_BREAST_EXPOSED", 0.3, (540, 360, 640, 480)),
    ]
    # anchor 5 also scored covered 0.6: multi-label decoding keeps it as a candidate,
    # and per-label NMS then drops it under anchor 7's 0.95 covered box
    result = NudityResult(tuple(findings))
    assert result.exposed_labels() == ["FEMALE_BREAST_EXPOSED"]
    assert result.exposed_labels(threshold=0.95) == []
    assert result.max_exposed_score() == pytest.approx(0.9)


def test_decode_keeps_an_exposed_box_under_a_stronger_covered_one():
    """nudenet 3.4.2's class-agnostic NMS would drop the exposed box here."""
    output = np.zeros((1, 4 + len(LABELS), 2100), dtype=np.float32)
    output[0, :4, 0] = output[0, :4, 1] = (100, 190, 100, 100)
    output[0, 4 + BREAST_COVERED, 0] = 0.8
    output[0, 4 + BREAST, 1] = 0.5
    labels = {f.label for f in decode(output, FRAME, min_score=0.2, iou=0.45)}
    assert labels == {"FEMALE_BREAST_COVERED", "FEMALE_BREAST_EXPOSED"}


def test_decode_of_an_empty_output_and_of_a_malformed_one():
    empty = np.zeros((1, 4 + len(LABELS), 2100), dtype=np.float32)
    assert decode(empty, FRAME, min_score=0.2, iou=0.45) == []
    with pytest.raises(NudityModelError, match="expected model output"):
        decode(np.zeros((1, 84, 2100), dtype=np.float32), FRAME, min_score=0.2, iou=0.45)


def test_letterbox_and_decode_round_trip_on_a_tall_photo():
    photo = Image.new("RGB", (300, 900))
    _, frame = letterbox(photo)  # scale 320/900; photo 107 wide, centred: pad_x 106
    box = (30, 450, 150, 600)  # photo pixels
    cx = ((box[0] + box[2]) / 2) * frame.scale_x + frame.pad_x
    cy = ((box[1] + box[3]) / 2) * frame.scale_y + frame.pad_y
    w, h = (box[2] - box[0]) * frame.scale_x, (box[3] - box[1]) * frame.scale_y
    output = np.zeros((4 + len(LABELS), 2100), dtype=np.float32)
    output[:4, 0] = (cx, cy, w, h)
    output[4 + BREAST, 0] = 0.6
    (finding,) = decode(output, frame, min_score=0.2, iou=0.45)
    assert all(abs(a - b) <= 1 for a, b in zip(finding.box, box, strict=True))


# --- the result and the fake -----------------------------------------------------------


def test_result_answers_the_policy_questions():
    result = NudityResult(
        (
            NudityFinding("FACE_FEMALE", 0.9, (0, 0, 10, 10)),
            NudityFinding("BELLY_EXPOSED", 0.9, (0, 0, 10, 10)),
            NudityFinding("MALE_BREAST_EXPOSED", 0.8, (0, 0, 10, 10)),
            NudityFinding("BUTTOCKS_EXPOSED", 0.3, (0, 0, 10, 10)),
            NudityFinding("MALE_GENITALIA_EXPOSED", 0.6, (0, 0, 10, 10)),
            NudityFinding("MALE_GENITALIA_EXPOSED", 0.4, (20, 20, 30, 30)),
            NudityFinding("BUTTOCKS_COVERED", 0.99, (0, 0, 10, 10)),
        )
    )
    assert result.exposed_labels() == ["MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED"]
    assert result.exposed_labels(0.5) == ["MALE_GENITALIA_EXPOSED"]
    assert result.has_exposed() and not result.has_exposed(0.7)
    assert result.max_exposed_score() == 0.6
    assert NudityResult(()).exposed_labels() == [] and NudityResult(()).max_exposed_score() == 0
    assert NudityResult.from_json(result.to_json()) == result
    assert set(LABELS) >= EXPOSED_LABELS
    assert 0 < NudityResult.EXPOSED_THRESHOLD < 1


def test_the_fake_detector_returns_what_it_was_given():
    finding = NudityFinding("ANUS_EXPOSED", 0.99, (1, 2, 3, 4))
    fake = FakeNudityDetector([finding])
    assert fake.detect(Image.new("RGB", (4, 4))) == [finding]
    assert fake.score(Image.new("RGB", (4, 4))).exposed_labels() == ["ANUS_EXPOSED"]
    assert FakeNudityDetector().score(Image.new("RGB", (4, 4))).findings == ()


# --- benign photos ---------------------------------------------------------------------


@pytest.mark.parametrize("relative", SHARED_PHOTOS)
def test_shared_face_photos_have_no_exposed_labels_and_their_face_is_found(detector, relative):
    photo = open_rgb(shared_faces_dir() / relative)
    result = detector.score(photo)
    assert result.exposed_labels(threshold=NudityDetector.MIN_SCORE) == []
    faces = [f for f in result.findings if f.label.startswith("FACE_") and f.score >= 0.5]
    assert faces, result.findings
    # each is a portrait: the face sits in the upper half and is neither tiny nor the whole
    left, top, right, bottom = faces[0].box
    assert (top + bottom) / 2 < photo.height / 2
    assert 0.01 < (right - left) * (bottom - top) / (photo.width * photo.height) < 0.5


@pytest.mark.parametrize("name", SKIMAGE_SAMPLES)
def test_skimage_samples_have_no_exposed_labels(detector, name):
    photo = open_rgb(skimage_dir() / name)
    assert detector.score(photo).exposed_labels() == []


def test_colour_wheel_is_a_known_false_positive(detector):
    """A rainbow colour wheel (scikit-image's color.png) scores BUTTOCKS_EXPOSED 0.74
    here and 0.83 with nudenet's own code: the model, not our decoding. Recorded so a
    change of model or threshold shows up; such a photo is held for review."""
    photo = open_rgb(skimage_dir() / "color.png")
    assert detector.score(photo).exposed_labels() == ["BUTTOCKS_EXPOSED"]


def test_throughput(detector, capsys):
    photo = open_rgb(shared_faces_dir() / "eileen_collins/astronaut.jpg")  # 512x512
    detector.detect(photo)
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        detector.detect(photo)
    per_second = runs / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nnudity detector: {per_second:.1f} img/s on 512x512 (2 threads)")
    assert per_second > 2  # generous: ~40 img/s on a quiet 2-core machine
