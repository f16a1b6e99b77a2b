"""The image pipeline as the worker calls it, and ``moderation bench images``.

Real models on real photos: the shared face photos, run through ``sanitize_image`` as an
upload is, and the composed class photos of ``models.images.bench_faces``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from models.images.bench import format_table
from models.images.bench_faces import SHARED_FACES, shared_faces_dir, truth_found
from models.images.faces import Face, FaceAnalyzer
from models.images.hashes import CROP_VARIANTS, hash_to_str
from models.images.nudity import FakeNudityDetector, NudityDetector, NudityFinding
from models.images.pipeline import ImageModels, analyse_frames, analyse_image
from moderation.cli import app
from moderation.media import sanitize_image

OBAMA = "barack_obama/obama.jpg"
FACE_KEYS = {"box", "box_fraction", "score", "too_small", "blurry", "matchable"}
BENCH_KEYS = {
    "photos_per_s",
    "reference_photos_per_s",
    "speedup",
    "face_recall",
    "reference_face_recall",
}


@pytest.fixture(scope="module")
def models() -> ImageModels:
    return ImageModels.load()


@pytest.fixture(scope="module")
def obama() -> Image.Image:
    """The shared photo as the worker sees an upload of it: sanitised."""
    return sanitize_image((shared_faces_dir() / OBAMA).read_bytes()).rgb


def _numbers_lists(value: Any) -> list[list[Any]]:
    """Every list in a JSON value whose items are all numbers (a descriptor would be one)."""
    if isinstance(value, dict):
        return [found for item in value.values() for found in _numbers_lists(item)]
    if isinstance(value, list):
        if value and all(isinstance(v, int | float) for v in value):
            return [value]
        return [found for item in value for found in _numbers_lists(item)]
    return []


def _assert_no_descriptor(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    assert "embedding" not in text and "descriptor" not in text
    assert all(len(numbers) <= 4 for numbers in _numbers_lists(document)), "a vector leaked"


def test_analyse_image_finds_the_face_and_keeps_the_descriptor_in_memory(
    models: ImageModels, obama: Image.Image
) -> None:
    analysis = analyse_image(obama, models)
    (face,) = analysis.faces
    assert truth_found(SHARED_FACES[OBAMA][1], face.box)
    assert face.matchable and face.embedding is not None and face.embedding.shape == (128,)
    assert not analysis.nudity.has_exposed()
    assert analysis.hashes.matchable and len(analysis.hashes.crops) == len(CROP_VARIANTS)


def test_analysis_json_has_boxes_and_hashes_but_no_descriptor(
    models: ImageModels, obama: Image.Image
) -> None:
    analysis = analyse_image(obama, models)
    document = json.loads(json.dumps(analysis.to_json()))  # plain JSON, round-tripped
    _assert_no_descriptor(document)
    assert (document["width"], document["height"]) == obama.size
    (face,) = document["faces"]
    assert set(face) == FACE_KEYS
    assert face["box"] == list(analysis.faces[0].box)
    x0, y0, x1, y1 = face["box"]
    assert face["box_fraction"] == pytest.approx(
        [x0 / obama.width, y0 / obama.height, x1 / obama.width, y1 / obama.height], abs=1e-4
    )
    assert face["matchable"] is True
    # variant = index, in ImageHashes.all() order, as the hash lists store them
    assert document["hashes"] == [hash_to_str(h) for h in analysis.hashes.all()]
    assert len(document["hashes"]) == 1 + len(CROP_VARIANTS)
    assert document["hash_quality"] == analysis.hashes.quality
    assert document["nudity"] == analysis.nudity.to_json()


def test_a_flat_image_has_no_face_and_stores_no_hashes(models: ImageModels) -> None:
    analysis = analyse_image(Image.new("RGB", (640, 480), (250, 250, 250)), models)
    assert analysis.faces == [] and not analysis.hashes.matchable
    document = analysis.to_json()
    assert document["faces"] == [] and document["hashes"] == []


def test_analyse_frames_per_frame_and_hashes_of_the_first(
    models: ImageModels, obama: Image.Image
) -> None:
    blank = Image.new("RGB", (320, 240), (30, 90, 160))
    video = analyse_frames([obama, blank, obama.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], models)
    assert [len(faces) for faces in video.faces] == [1, 0, 1]
    assert len(video.nudity) == 3
    assert video.hashes == analyse_image(obama, models).hashes
    document = json.loads(json.dumps(video.to_json()))
    _assert_no_descriptor(document)
    assert [len(frame["faces"]) for frame in document["frames"]] == [1, 0, 1]
    assert [frame["width"] for frame in document["frames"]] == [obama.width, 320, obama.width]
    assert "hashes" not in document["frames"][0]
    assert document["hashes"][0] == hash_to_str(video.hashes.phash)

    empty = analyse_frames([], models)
    assert empty.frames == [] and empty.hashes is None and empty.to_json()["hashes"] == []


def test_models_load_once_with_one_thread_each(models: ImageModels) -> None:
    """One torch and one onnxruntime thread per call: a two-core worker runs two processes."""
    assert ImageModels.load() is models
    assert models.threads == 1
    faces, nudity = models.faces, models.nudity
    assert isinstance(faces, FaceAnalyzer) and isinstance(nudity, NudityDetector)
    assert faces.detector.num_threads == 1 and faces.descriptor.num_threads == 1
    options = nudity._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_fake_models_return_what_they_are_given() -> None:
    face = Face(
        box=(10, 10, 60, 70),
        score=0.99,
        landmarks=(),
        embedding=None,
        too_small=False,
        blurry=False,
        sharpness=500.0,
    )
    finding = NudityFinding("BUTTOCKS_EXPOSED", 0.9, (0, 0, 5, 5))
    fake = ImageModels.fake([face], FakeNudityDetector([finding]))
    analysis = analyse_image(Image.new("RGB", (100, 100)), fake)
    assert analysis.faces == [face]
    assert analysis.nudity.exposed_labels() == ["BUTTOCKS_EXPOSED"]
    assert analysis.to_json()["faces"][0]["box_fraction"] == [0.1, 0.1, 0.6, 0.7]


def test_bench_images_prints_the_json_keys(models: ImageModels) -> None:
    """Two photos through both pipelines. The speed-up bound is a loose sanity check only
    (measured about 5x): a two-photo run on a shared machine is noisy."""
    result = CliRunner().invoke(app, ["bench", "images", "--photos", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert "photo 2/2" in result.stderr  # progress goes to stderr, the JSON alone to stdout
    report = json.loads(result.stdout)
    assert report.keys() >= BENCH_KEYS
    assert report["photos"] == 2 and report["faces"] >= 12
    assert report["face_recall"] >= 0.9
    assert 0.5 <= report["reference_face_recall"] <= 1.0
    assert report["photos_per_s"] > report["reference_photos_per_s"] > 0
    assert report["speedup"] > 1.5 and report["speedup_cpu"] > 1.5, report
    assert set(report["cpu_ms_per_photo"]) == {"sanitize", "analyse", "blur"}
    assert report["faces_blurred"] >= 6

    table = format_table(report)
    assert "face recall" in table and f"{report['speedup']:.2f}x wall" in table


def test_bench_images_refuses_zero_photos() -> None:
    result = CliRunner().invoke(app, ["bench", "images", "--photos", "0"])
    assert result.exit_code == 2
    assert "--photos" in result.stderr
