"""Pascal-VOC reader: a fixture the test writes (tiny images + XML), read back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vlx.data.voc import class_indices, read_annotation, read_voc
from vlx.errors import InputError


def annotation(filename: str, size: tuple[int, int], objects: list[tuple[str, tuple]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><difficult>{int(name == 'dog')}</difficult><bndbox>"
        f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    width, height = size
    return (
        f"<annotation><folder>x</folder><filename>{filename}</filename><size><width>{width}"
        f"</width><height>{height}</height><depth>3</depth></size>{body}</annotation>"
    )


def write_voc(root: Path) -> Path:
    """Two images beside their XML, a third in the VOC layout (Annotations/, JPEGImages/)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (8, 6), "red").save(root / "a.png")
    Image.new("RGB", (5, 5), "blue").save(root / "b.png")
    Image.new("RGB", (7, 4), "green").save(root / "JPEGImages" / "c.jpg")
    (root / "a.xml").write_text(annotation("a.png", (8, 6), [("cat", (1, 1, 4, 3)), ("dog", (5, 2, 8, 6))]))
    (root / "b.xml").write_text(annotation("b.png", (5, 5), []))
    (root / "Annotations" / "c.xml").write_text(annotation("c.jpg", (7, 4), [("n02123045", (2, 2, 7, 4))]))
    return root


def test_round_trip_of_boxes_and_sizes(tmp_path: Path) -> None:
    images = read_voc(write_voc(tmp_path))
    assert [(i.path.name, i.width, i.height) for i in images] == [
        ("a.png", 8, 6), ("b.png", 5, 5), ("c.jpg", 7, 4)
    ]
    a, b, c = images
    assert [(o.name, o.box, o.difficult) for o in a.objects] == [
        ("cat", (0, 0, 3, 2), False), ("dog", (4, 1, 7, 5), True)
    ]  # VOC counts from 1: every edge moves by one
    assert a.boxes("dog") == [(4, 1, 7, 5)] and a.boxes("bird") == []
    assert b.objects == ()
    assert c.objects[0].box == (1, 1, 6, 3)
    assert c.path == tmp_path / "JPEGImages" / "c.jpg"


def test_zero_based_coordinates(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    (root / "z.xml").write_text(annotation("b.png", (5, 5), [("cat", (0, 1, 4, 4))]))
    assert read_annotation(root / "z.xml", root, origin=0).objects[0].box == (0, 1, 4, 4)
    with pytest.raises(InputError, match="not inside"):
        read_annotation(root / "z.xml", root, origin=1)  # xmin 0 is outside a 1-based image


def test_names_map_by_wordnet_id_or_class_name() -> None:
    classes = ["tench, Tinca tinca", "tabby, tabby cat", "Egyptian cat"]
    synsets = ["n01440764", "n02123045", "n02124075"]
    mapping = class_indices(["n02123045", "Tabby Cat", "egyptian_cat", "tench"], classes, synsets)
    assert mapping == {"n02123045": 1, "Tabby Cat": 1, "egyptian_cat": 2, "tench": 0}


def test_unknown_names_are_listed_with_close_matches() -> None:
    with pytest.raises(InputError) as error:
        class_indices(["tabbby", "zebra", "tench"], ["tench", "tabby"])
    message = str(error.value)
    assert "'tabbby' (closest: tabby)" in message and "'zebra'" in message
    assert "'tench'" not in message


def test_bad_folders_and_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_voc(tmp_path / "missing")
    with pytest.raises(InputError, match="no .xml"):
        read_voc(tmp_path)
    (tmp_path / "broken.xml").write_text("<annotation><filename>")
    with pytest.raises(InputError, match="broken.xml.*not valid XML"):
        read_voc(tmp_path)
    (tmp_path / "broken.xml").write_text(annotation("gone.png", (4, 4), []))
    with pytest.raises(InputError, match="names image 'gone.png'"):
        read_voc(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "gone.png")
    (tmp_path / "broken.xml").write_text(annotation("gone.png", (4, 4), [("cat", (1, 1, 9, 2))]))
    with pytest.raises(InputError, match=r"box \(0, 0, 8, 1\) of 'cat' is not inside the 4x4"):
        read_voc(tmp_path)
    (tmp_path / "broken.xml").write_text("<annotation><filename>gone.png</filename></annotation>")
    with pytest.raises(InputError, match="missing <size/width>"):
        read_voc(tmp_path)
