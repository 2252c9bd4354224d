"""ShapesWorld: determinism, geometry, grounding, questions, concept maps, files."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from PIL import Image

from vlx.data.shapes import (
    ANSWERS,
    BACKGROUNDS,
    COLOUR_JITTER,
    COLOUR_RGB,
    COLOURS,
    COUNT_WORDS,
    GROUNDED_WORDS,
    PLURALS,
    QUESTION_KINDS,
    SHAPES,
    SIZES,
    SPLITS,
    TEXTURES,
    Scene,
    ShapesDataset,
    ShapesWorld,
    read_split,
    write_split,
)

N_SCENES = 60


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    world = ShapesWorld(seed=3)
    return [world.scene(i) for i in range(N_SCENES)]


def _left_of(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[2] <= b[0]


def test_same_seed_and_index_regenerate_identically() -> None:
    a, b = ShapesWorld(seed=7), ShapesWorld(seed=7)
    for index in (0, 5, 123_456):
        s, t = a.scene(index), b.scene(index)
        assert np.array_equal(s.image, t.image)
        assert s.caption() == t.caption()
        assert s.questions() == t.questions()
        assert all(np.array_equal(o.mask, p.mask) for o, p in zip(s.objects, t.objects))


def test_different_seed_or_index_differs() -> None:
    image = ShapesWorld(seed=0).scene(0).image
    assert not np.array_equal(image, ShapesWorld(seed=1).scene(0).image)
    assert not np.array_equal(image, ShapesWorld(seed=0).scene(1).image)


def test_constants_are_consistent() -> None:
    assert len(SHAPES) == len(COLOURS) == 6 and SIZES == ("small", "large")
    assert BACKGROUNDS == ("plain", *TEXTURES) and len(TEXTURES) == 4
    assert sorted(PLURALS.values()) == sorted(SHAPES) and PLURALS["crosses"] == "cross"
    assert len(set(ANSWERS)) == len(ANSWERS)
    assert {"yes", "no", "zero", "four", *COLOURS, *SHAPES} <= set(ANSWERS)
    starts = sorted(SPLITS.values())
    for (start, length), (next_start, _) in itertools.pairwise(starts):
        assert start + length <= next_start


def test_scene_structure(scenes: list[Scene]) -> None:
    counts = set()
    for scene in scenes:
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 4
        assert scene.background in BACKGROUNDS
        counts.add(len(scene.objects))
        xs = [o.centre[0] for o in scene.objects]
        assert xs == sorted(xs), "objects must be stored left to right"
    assert counts == {1, 2, 3, 4}
    assert 0.25 < np.mean([s.background == "plain" for s in scenes]) < 0.75


def test_masks_inside_boxes_disjoint_and_coloured(scenes: list[Scene]) -> None:
    for scene in scenes:
        covered = np.zeros((128, 128), dtype=bool)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            inside = np.zeros_like(obj.mask)
            inside[y0:y1, x0:x1] = True
            assert obj.mask.any() and not (obj.mask & ~inside).any()
            ys, xs = np.nonzero(obj.mask)  # the box is tight
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == obj.box
            assert not (covered & obj.mask).any()
            covered |= obj.mask
            pixels = scene.image[obj.mask].astype(int)
            assert np.abs(pixels - COLOUR_RGB[obj.colour]).max() <= COLOUR_JITTER
            assert np.array_equal(scene.object_mask(scene.objects.index(obj)), obj.mask)
        for i, a in enumerate(scene.objects):  # boxes keep a margin
            for b in scene.objects[i + 1 :]:
                gap_x = max(b.box[0] - a.box[2], a.box[0] - b.box[2])
                gap_y = max(b.box[1] - a.box[3], a.box[1] - b.box[3])
                assert max(gap_x, gap_y) >= 2


def test_sizes_are_clearly_different(scenes: list[Scene]) -> None:
    extent = {"small": [], "large": []}
    for scene in scenes:
        for obj in scene.objects:
            extent[obj.size].append(max(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]))
    assert max(extent["small"]) <= 22 and min(extent["large"]) >= 32


def test_background_is_grey_and_unlike_objects(scenes: list[Scene]) -> None:
    for scene in scenes:
        bg = scene.image[scene.background_mask()]
        assert (bg == bg[:, :1]).all(), "background must be grey"
        assert bg.max() < 150, "background must stay far from white objects"
        tones = len(np.unique(bg[:, 0]))
        assert tones == (1 if scene.background == "plain" else 2)


def test_textured_fraction_extremes() -> None:
    assert {ShapesWorld(textured_fraction=0.0).scene(i).background for i in range(20)} == {"plain"}
    textured = {ShapesWorld(textured_fraction=1.0).scene(i).background for i in range(40)}
    assert textured == set(TEXTURES)


def test_object_count_bounds_and_image_size() -> None:
    world = ShapesWorld(seed=1, image_size=64, min_objects=4, max_objects=4)
    for i in range(10):
        scene = world.scene(i)
        assert scene.image.shape == (64, 64, 3) and len(scene.objects) == 4


def test_caption_grounding(scenes: list[Scene]) -> None:
    for scene in scenes:
        caption = scene.caption()
        tokens = scene.caption_grounding()
        assert " ".join(t.word for t in tokens) == caption
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", caption)
        assert caption.endswith(f"on a {scene.background} background")
        for token in tokens:
            if token.category in ("colour", "shape", "size"):
                assert getattr(scene.objects[token.referent], token.category) == token.word
            elif token.category == "texture":
                assert token.referent == "background" and token.word == scene.background
            else:
                assert token.category is None and token.referent is None
        referents = [t.referent for t in tokens if t.category == "shape"]
        assert referents == list(range(len(scene.objects)))


def test_caption_relations_are_true(scenes: list[Scene]) -> None:
    pattern = re.compile(r"a (\w+) (\w+) (\w+)(?: (left of|above|below) )?")
    seen = set()
    for scene in scenes:
        body = scene.caption().rsplit(" on a ", 1)[0] + " "
        matches = list(pattern.finditer(body))
        assert [m.group(1, 2, 3) for m in matches] == [
            (o.size, o.colour, o.shape) for o in scene.objects
        ]
        relations = [m.group(4) for m in matches][:-1]
        for i, relation in enumerate(relations):
            a, b = scene.objects[i].box, scene.objects[i + 1].box
            seen.add(relation)
            if relation == "left of":
                assert _left_of(a, b)
            elif relation == "above":
                assert a[3] <= b[1]
            else:
                assert b[3] <= a[1]
    assert seen == {"left of", "above", "below"}


def test_word_mask(scenes: list[Scene]) -> None:
    for scene in scenes:
        for colour in COLOURS:
            union = np.zeros((128, 128), dtype=bool)
            for obj in scene.objects:
                if obj.colour == colour:
                    union |= obj.mask
            assert np.array_equal(scene.word_mask(colour), union)
        for size in SIZES:
            expected = sum(o.size == size for o in scene.objects)
            covered = [o for o in scene.objects if (scene.word_mask(size) & o.mask).any()]
            assert len(covered) == expected
        for plural, singular in PLURALS.items():
            assert np.array_equal(scene.word_mask(plural), scene.word_mask(singular))
        for texture in TEXTURES:
            mask = scene.word_mask(texture)
            if texture == scene.background:
                assert np.array_equal(mask, scene.background_mask()) and mask.any()
            else:
                assert not mask.any()
            for obj in scene.objects:
                assert not (mask & obj.mask).any()


def test_word_mask_circle_is_every_circle() -> None:
    world = ShapesWorld(seed=0)
    scene = next(
        s for s in map(world.scene, range(500)) if [o.shape for o in s.objects].count("circle") > 1
    )
    mask = scene.word_mask("circles")
    for obj in scene.objects:
        assert (mask & obj.mask).any() == (obj.shape == "circle")


@pytest.mark.parametrize("word", ["dog", "plain", "background", "Red"])
def test_word_mask_rejects_ungrounded_words(scenes: list[Scene], word: str) -> None:
    with pytest.raises(ValueError, match=f"'{word}'.*circle"):
        scenes[0].word_mask(word)


def test_questions_are_consistent_with_scene(scenes: list[Scene]) -> None:
    kinds, exist_answers = set(), set()
    for scene in scenes:
        objs = scene.objects
        pairs = [(o.colour, o.shape) for o in objs]
        for q in scene.questions():
            kinds.add(q.kind)
            assert q.kind in QUESTION_KINDS and q.answer in ANSWERS
            assert q.text.endswith("?") and "colour" not in q.text
            if q.kind == "colour":
                ref = objs[q.referent]
                assert q.text == f"what color is the {ref.shape}?" and q.answer == ref.colour
                assert [o.shape for o in objs].count(ref.shape) == 1
            elif q.kind == "shape":
                ref = objs[q.referent]
                assert q.text == f"what shape is the {ref.colour} object?"
                assert q.answer == ref.shape
                assert [o.colour for o in objs].count(ref.colour) == 1
            elif q.kind == "count":
                noun = re.fullmatch(r"how many (\w+) are there\?", q.text).group(1)
                n = len(objs) if noun == "objects" else sum(o.shape == PLURALS[noun] for o in objs)
                assert q.answer == COUNT_WORDS[n]
            elif q.kind == "exist":
                c, s = re.fullmatch(r"is there a (\w+) (\w+)\?", q.text).groups()
                exist_answers.add(q.answer)
                assert q.answer == ("yes" if (c, s) in pairs else "no")
                if q.referent is not None:
                    assert pairs[q.referent] == (c, s) and q.answer == "yes"
            else:
                c1, s1, c2, s2 = re.fullmatch(
                    r"is the (\w+) (\w+) left of the (\w+) (\w+)\?", q.text
                ).groups()
                assert pairs.count((c1, s1)) == pairs.count((c2, s2)) == 1
                a, b = objs[pairs.index((c1, s1))], objs[pairs.index((c2, s2))]
                assert q.referent == pairs.index((c1, s1))
                assert q.answer == ("yes" if _left_of(a.box, b.box) else "no")
                assert _left_of(a.box, b.box) or _left_of(b.box, a.box)
    assert kinds == set(QUESTION_KINDS)
    assert exist_answers == {"yes", "no"}


def test_concept_maps_agree_with_masks(scenes: list[Scene]) -> None:
    for scene in scenes:
        maps = scene.concept_maps()
        assert set(maps) == {"colour", "shape", "texture"}
        assert all(m.dtype == np.int32 and m.shape == (128, 128) for m in maps.values())
        for obj in scene.objects:
            assert (maps["colour"][obj.mask] == COLOURS.index(obj.colour) + 1).all()
            assert (maps["shape"][obj.mask] == SHAPES.index(obj.shape) + 1).all()
            assert (maps["texture"][obj.mask] == 0).all()
        background = scene.background_mask()
        assert (maps["colour"][background] == 0).all() and (maps["shape"][background] == 0).all()
        label = 0 if scene.background == "plain" else TEXTURES.index(scene.background) + 1
        assert (maps["texture"][background] == label).all()


def test_dataset_items_and_splits() -> None:
    world = ShapesWorld(seed=2)
    data = ShapesDataset(world, start=10, length=3)
    assert len(data) == 3
    item = data[1]
    scene = world.scene(11)
    assert item["index"] == 11 and item["caption"] == scene.caption()
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 128, 128)
    expected = torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255
    assert torch.allclose(item["image"], expected)
    assert data[-1]["index"] == 12 and data.scene(0).index == 10
    with pytest.raises(IndexError):
        data[3]
    val = ShapesDataset.from_split(world, "val", length=5)
    assert val.start == SPLITS["val"][0] and len(val) == 5
    with pytest.raises(ValueError, match="'dev'.*train"):
        ShapesDataset.from_split(world, "dev")
    with pytest.raises(ValueError, match="length"):
        ShapesDataset.from_split(world, "test", length=10_001)


def test_write_and_read_split_round_trip(tmp_path) -> None:
    world = ShapesWorld(seed=4, image_size=64)
    out = write_split(world, tmp_path / "split", start=5, count=3, progress=False)
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "0000005.png",
        "0000006.png",
        "0000007.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "images"]
    annotations = read_split(out)
    assert ShapesWorld(**annotations["world"]) == world
    assert [r["index"] for r in annotations["images"]] == [5, 6, 7]
    for record in annotations["images"]:
        scene = world.scene(record["index"])
        image = np.asarray(Image.open(out / record["file_name"]))
        assert np.array_equal(image, scene.image)
        assert record["caption"] == scene.caption()
        assert record["background"] == scene.background
        assert record["questions"] == scene.questions()
        assert [(o["shape"], o["colour"], o["size"], o["box"]) for o in record["objects"]] == [
            (o.shape, o.colour, o.size, o.box) for o in scene.objects
        ]
    with pytest.raises(FileNotFoundError, match="annotations.json"):
        read_split(tmp_path / "missing")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, r"seed .* -1"),
        ({"image_size": 16}, r"image_size .*\[32, 1024\].* 16"),
        ({"min_objects": 0}, r"min_objects .*\[1, 4\].* 0"),
        ({"min_objects": 3, "max_objects": 2}, r"max_objects .*min_objects=3.* 2"),
        ({"max_objects": 5}, r"max_objects .* 5"),
        ({"textured_fraction": 1.5}, r"textured_fraction .*\[0, 1\].* 1.5"),
    ],
)
def test_parameter_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShapesWorld(**kwargs)


def test_scene_index_validation() -> None:
    with pytest.raises(ValueError, match="index .* -3"):
        ShapesWorld().scene(-3)


def test_grounded_words_cover_the_caption_vocabulary(scenes: list[Scene]) -> None:
    for scene in scenes:
        for token in scene.caption_grounding():
            assert (token.word in GROUNDED_WORDS) == (token.category is not None)


def test_forced_background_keeps_the_objects() -> None:
    world = ShapesWorld(seed=3, image_size=64)
    for index in range(20):
        plain = world.scene(index)
        for background in BACKGROUNDS:
            forced = world.scene(index, background=background)
            assert forced.background == background
            assert [(o.shape, o.colour, o.box) for o in forced.objects] == [
                (o.shape, o.colour, o.box) for o in plain.objects
            ]
            covered = ~plain.background_mask()
            assert np.array_equal(forced.image[covered], plain.image[covered])
            if background == plain.background:
                continue
            tones = np.unique(forced.image[~covered].reshape(-1, 3), axis=0)
            assert len(tones) == (1 if background == "plain" else 2)
        assert world.scene(index, background="dotted").image.tobytes() == (
            world.scene(index, background="dotted").image.tobytes()
        )
    with pytest.raises(ValueError, match="unknown background 'stripy'; valid: plain, striped"):
        world.scene(0, background="stripy")


def test_object_scale_enlarges_objects_and_defaults_unchanged() -> None:
    assert ShapesWorld(seed=2).scene(5).image.tobytes() == (
        ShapesWorld(seed=2, object_scale=1.0).scene(5).image.tobytes()
    )
    normal = ShapesWorld(seed=2, image_size=64, min_objects=1, max_objects=1)
    big = ShapesWorld(seed=2, image_size=64, min_objects=1, max_objects=1, object_scale=2.0)
    areas = []
    for index in range(30):
        (a,), (b,) = normal.scene(index).objects, big.scene(index).objects
        assert (a.shape, a.colour, a.size) == (b.shape, b.colour, b.size)
        side = max(b.box[2] - b.box[0], b.box[3] - b.box[1])
        assert 1.8 <= side / max(a.box[2] - a.box[0], a.box[3] - a.box[1]) <= 2.4
        areas.append(b.mask.sum() / a.mask.sum())
    assert np.mean(areas) == pytest.approx(4, rel=0.05)  # small rasters are coarse: on average
    for bad in (0.0, -1.0, 3.1):
        with pytest.raises(ValueError, match="object_scale must be in"):
            ShapesWorld(object_scale=bad)
