"""The Broden reader on a tiny hand-written fixture, its errors, and the ShapesWorld writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlx.data.shapes import COLOURS, SHAPES, ShapesWorld
from vlx.dissect.broden import BrodenProbe, decode_labels, encode_labels
from vlx.dissect.probe import load_probe, write_shapes_probe
from vlx.errors import InputError


def _png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def _labels_png(path: Path, labels: list[list[int]]) -> None:
    """Label numbers written by hand as R + 256 * G, independent of ``encode_labels``."""
    array = np.array(labels)
    rgb = np.stack([array % 256, array // 256, np.zeros_like(array)], axis=-1)
    _png(path, rgb)


def write_fixture(root: Path) -> Path:
    """Two 4x4 images. ``colour`` is pixel-level with two planes on image a (red 1 and blue
    300 overlap); ``scene`` is per-image (label 2 on image a, unlabelled on image b); label
    300 (above 255) is also a scene label with less coverage, so its category is colour.
    index.csv lists its columns in an unusual order: they must be read by name."""
    images = root / "images"
    for name in ("a", "b"):
        _png(images / f"{name}.png", np.full((4, 4, 3), 10))
    _labels_png(images / "a_colour.png", [[1, 1, 1, 0], [1, 1, 1, 0], [0] * 4, [0] * 4])
    _labels_png(images / "a_colour2.png", [[300, 0, 0, 0], [0] * 4, [0] * 4, [0, 0, 0, 300]])
    _labels_png(images / "b_colour.png", [[0] * 4, [0] * 4, [0, 0, 300, 300], [0] * 4])
    (root / "index.csv").write_text(
        "scene,image,sw,sh,split,iw,ih,colour\n"
        "2,a.png,4,4,train,4,4,a_colour.png;a_colour2.png\n"
        ",b.png,4,4,val,4,4,b_colour.png\n"
    )
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n"
        "0,-,-,0,0,\n1,red,colour(1),1,0.375,\n2,beach,scene(1),1,1.0,\n"
        "300,blue,colour(2);scene(1),2,0.25,\n"
    )
    (root / "category.csv").write_text(
        "name,first,last,count,frequency\ncolour,1,300,2,2\nscene,2,300,2,1\n"
    )
    (root / "c_colour.csv").write_text(
        "code,number,name,frequency,coverage\n1,1,red,1,0.375\n2,300,blue,2,0.25\n"
    )
    (root / "c_scene.csv").write_text(
        "code,number,name,frequency,coverage\n1,2,beach,1,1.0\n2,300,blue,1,0.01\n"
    )
    return root


def test_reader_decodes_planes_per_image_labels_and_categories(tmp_path):
    probe = BrodenProbe(write_fixture(tmp_path))
    assert len(probe) == 2 and probe.categories == ["colour", "scene"]
    assert [(lb.number, lb.name, lb.category) for lb in probe.labels] == [
        (1, "red", "colour"), (2, "beach", "scene"), (300, "blue", "colour"),
    ]
    a, b = probe[0], probe[1]
    assert a.size == (4, 4) and a.image.size == (4, 4)
    assert len(a.planes["colour"]) == 2  # the multi-plane category keeps both planes
    assert a.planes["colour"][0].dtype == np.int32
    assert a.planes["colour"][1][0, 0] == 300 and a.planes["colour"][1][3, 3] == 300
    assert a.planes["colour"][0].tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [0] * 4, [0] * 4]
    assert dict(a.whole) == {"scene": [2]}
    assert dict(b.whole) == {} and b.planes["colour"][0][2].tolist() == [0, 0, 300, 300]


def test_size_limits_the_images_read(tmp_path):
    probe = BrodenProbe(write_fixture(tmp_path), size=1)
    assert len(probe) == 1


def test_label_codec_keeps_numbers_above_255():
    labels = np.array([[0, 255], [256, 1198]])
    rgb = encode_labels(labels)
    assert rgb[1, 1].tolist() == [1198 % 256, 1198 // 256, 0]
    assert decode_labels(Image.fromarray(rgb)).tolist() == labels.tolist()


@pytest.mark.parametrize(
    ("file", "header", "missing"),
    [
        ("index.csv", "image,split,ih,iw,sh,colour,scene", "sw"),
        ("label.csv", "number,title,category", "name"),
        ("c_scene.csv", "code,number,name,frequency", "coverage"),
    ],
)
def test_malformed_csv_names_the_file_and_the_missing_column(tmp_path, file, header, missing):
    root = write_fixture(tmp_path)
    (root / file).write_text(header + "\n")
    with pytest.raises(InputError, match=rf"{file} has no column '{missing}'"):
        BrodenProbe(root)


def test_missing_probe_directory_and_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        BrodenProbe(tmp_path / "nowhere")
    with pytest.raises(InputError, match="neither 'shapes' nor a Broden directory"):
        load_probe(str(tmp_path / "nowhere"))
    root = write_fixture(tmp_path / "p")
    (root / "c_colour.csv").unlink()
    with pytest.raises(InputError, match="c_colour.csv"):
        BrodenProbe(root)


def test_shapes_probe_round_trips_the_concept_maps(tmp_path):
    directory = write_shapes_probe(tmp_path / "probe", 3)
    probe = BrodenProbe(directory)
    assert probe.categories == ["colour", "shape", "texture"]
    names = {(lb.category, lb.name): lb.number for lb in probe.labels}
    assert names[("colour", COLOURS[0])] == 1 and names[("shape", SHAPES[0])] == 7
    world = ShapesWorld(seed=0)
    for i in range(3):
        scene = world.scene(2_000_000 + i)
        item = probe[i]
        assert np.array_equal(np.asarray(item.image), scene.image)
        for category, offset in (("colour", 0), ("shape", 6), ("texture", 12)):
            expected = scene.concept_maps()[category]
            planes = item.planes.get(category)
            if not expected.any():  # a plain background: texture left unlabelled
                assert planes is None
                continue
            assert np.array_equal(planes[0], np.where(expected > 0, expected + offset, 0))


def test_load_probe_writes_the_shapes_probe_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VLX_CACHE", str(tmp_path))
    first = load_probe("shapes", 2)
    index = first.directory / "index.csv"
    stamp = index.stat().st_mtime_ns
    again = load_probe("shapes", 2)
    assert again.directory == first.directory and index.stat().st_mtime_ns == stamp
    assert first.name == "shapes:2" and len(again) == 2
    assert not [p for p in first.directory.parent.iterdir() if p.name.startswith(".")]
