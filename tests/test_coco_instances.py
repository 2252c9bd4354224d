"""The COCO instances reader: segmentations decoded to exact pixels, masks and boxes by category,
caption words mapped to categories, and a clear error for each kind of broken file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlx.data.coco_instances import (
    COCO_WORDS,
    CocoInstances,
    decode_counts,
    decode_segmentation,
)
from vlx.errors import InputError
from vlx.task import Target

COCO_80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]


# A tiny encoder, written from the format's description, to round-trip masks through the reader.
def runs_of(mask: np.ndarray) -> list[int]:
    """Alternating run lengths, zeros first, of ``mask`` read column by column."""
    runs, current, length = [], False, 0
    for value in mask.flatten(order="F"):
        if bool(value) == current:
            length += 1
        else:
            runs.append(length)
            current, length = bool(value), 1
    runs.append(length)
    return runs


def encode_counts(runs: list[int]) -> str:
    """COCO's compressed string of ``runs``: from the fourth on, each is a difference from the
    run two before; 5 bits a character, 0x20 for more, 0x10 of the last one the sign."""
    chars = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        while True:
            bits = value & 0x1F
            value >>= 5
            more = value != -1 if bits & 0x10 else value != 0
            chars.append(chr((bits | 0x20 if more else bits) + 48))
            if not more:
                break
    return "".join(chars)


def block(height: int, width: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return mask


# Image 1 is 6 high, 8 wide: two dogs (a polygon square, an uncompressed RLE), a person as a
# compressed RLE and a crowd of people as an uncompressed RLE. Image 2 (4 x 10) has a cat whose
# compressed counts are worked out by hand below; image 3 has nothing.
SQUARE = [[1, 1, 3, 1, 3, 3, 1, 3]]  # pixels x 1..3, y 1..3
DOG_SQUARE = block(6, 8, slice(1, 4), slice(1, 4))
DOG_CORNER = block(6, 8, slice(4, 6), slice(6, 8))
PERSON = block(6, 8, slice(0, 2), slice(4, 8))
CROWD = block(6, 8, slice(5, 6), slice(0, 4))
CAT = np.ones((4, 10), dtype=bool)
CAT[:3, 0] = False
CAT[2, 9] = False


def instances_json() -> dict:
    def rle(mask: np.ndarray, compressed: bool) -> dict:
        runs = runs_of(mask)
        return {"size": list(mask.shape), "counts": encode_counts(runs) if compressed else runs}

    def annotation(n: int, image: int, category: int, segmentation, bbox, crowd: int = 0):
        return {"id": n, "image_id": image, "category_id": category, "segmentation": segmentation,
                "bbox": bbox, "iscrowd": crowd, "area": 1.0}

    return {
        "info": {"description": "tiny"},
        "images": [
            {"id": 3, "file_name": "c.jpg", "height": 5, "width": 5},
            {"id": 1, "file_name": "a.jpg", "height": 6, "width": 8},
            {"id": 2, "file_name": "b.jpg", "height": 4, "width": 10},
        ],
        "categories": [  # out of id order on purpose
            {"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 17, "name": "cat", "supercategory": "animal"},
            {"id": 64, "name": "potted plant", "supercategory": "furniture"},
        ],
        "annotations": [
            annotation(10, 1, 18, SQUARE, [1.0, 1.0, 2.0, 2.0]),
            annotation(11, 1, 1, rle(PERSON, compressed=True), [3.5, 0.2, 4.0, 1.3]),
            annotation(12, 1, 18, rle(DOG_CORNER, compressed=False), [6.5, 4.0, 3.0, 5.0]),
            annotation(13, 1, 1, rle(CROWD, compressed=False), [0.0, 5.0, 4.0, 1.0], crowd=1),
            annotation(14, 2, 17, {"size": [4, 10], "counts": "3S11nN"}, [0, 0, 10, 4]),
        ],
    }


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "instances_tiny.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def coco(tmp_path: Path) -> CocoInstances:
    return CocoInstances(write(tmp_path, instances_json()))


# --- decoding -----------------------------------------------------------------------------------

def test_polygon_square_is_its_nine_pixels() -> None:
    mask = decode_segmentation(SQUARE, 5, 5)
    expected = np.array([
        [0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ], dtype=bool)
    assert mask.dtype == np.bool_ and mask.shape == (5, 5)
    np.testing.assert_array_equal(mask, expected)


def test_polygons_are_unioned_and_clipped_to_the_image() -> None:
    mask = decode_segmentation([[0, 0, 1, 0, 1, 1, 0, 1], [3, 3, 9, 3, 9, 9, 3, 9]], 5, 5)
    expected = block(5, 5, slice(0, 2), slice(0, 2)) | block(5, 5, slice(3, 5), slice(3, 5))
    np.testing.assert_array_equal(mask, expected)
    assert not decode_segmentation([], 3, 4).any()


def test_uncompressed_rle_by_hand() -> None:
    # 2 x 3, column-major: 1 zero, 2 ones, 3 zeros -> column 0 is (0, 1), column 1 is (1, 0).
    mask = decode_segmentation({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3)
    np.testing.assert_array_equal(mask, np.array([[0, 1, 0], [1, 0, 0]], dtype=bool))


def test_compressed_rle_by_hand() -> None:
    # Runs 3, 35, 1, 1 in a 4 x 10 image. '3' is 3; 35 = 3 + 1 * 32 is 'S' (3 | 0x20, + 48) then
    # '1'; '1' is 1; the fourth is stored as 1 - 35 = -34: low 5 bits 30 with more ('n'), then
    # 30 with the sign bit and no more ('N'): 30 + 30 * 32 - 1024 = -34.
    assert decode_counts("3S11nN") == [3, 35, 1, 1]
    assert encode_counts([3, 35, 1, 1]) == "3S11nN"
    mask = decode_segmentation({"size": [4, 10], "counts": "3S11nN"}, 4, 10)
    np.testing.assert_array_equal(mask, CAT)
    assert mask.sum() == 36 and not mask[0, 0] and mask[3, 0] and not mask[2, 9]


def test_the_first_three_compressed_values_are_not_differences() -> None:
    # COCO stores the fourth value on as a difference; 5, 5, 5 must stay 5, 5, 5.
    assert encode_counts([5, 5, 5, 5]) == "5550"
    assert decode_counts("5550") == [5, 5, 5, 5]


@pytest.mark.parametrize("compressed", [False, True])
def test_rle_round_trips(compressed: bool) -> None:
    rng = np.random.default_rng(0)
    masks = [
        np.zeros((3, 4), dtype=bool),
        np.ones((60, 70), dtype=bool),  # one run of 4200: several characters
        block(7, 5, slice(0, 7), slice(0, 1)),  # starts with a foreground pixel: a zero run
        rng.random((13, 17)) < 0.5,
        rng.random((40, 33)) < 0.05,
        block(50, 80, slice(10, 40), slice(5, 75)),
    ]
    for mask in masks:
        runs = runs_of(mask)
        counts = encode_counts(runs) if compressed else runs
        if compressed:
            assert decode_counts(counts) == runs
        decoded = decode_segmentation({"size": list(mask.shape), "counts": counts}, *mask.shape)
        np.testing.assert_array_equal(decoded, mask)


# --- the reader ---------------------------------------------------------------------------------

def test_reads_images_and_categories(coco: CocoInstances) -> None:
    assert coco.categories() == ["person", "cat", "dog", "potted plant"]
    assert coco.image_ids() == [1, 2, 3]
    assert len(coco) == 3
    assert coco.file_name(2) == "b.jpg"
    assert coco.size(1) == (6, 8)


def test_truth_unions_instances_by_category(coco: CocoInstances) -> None:
    truth = coco.truth(1)
    assert list(truth.masks) == ["person", "dog"]
    for name, expected in (("dog", DOG_SQUARE | DOG_CORNER), ("person", PERSON | CROWD)):
        mask = truth.masks[name]
        assert mask.dtype == torch.bool and mask.shape == (6, 8)
        assert torch.equal(mask, torch.from_numpy(expected))
    # floor(x), floor(y), ceil(x + w) - 1, ceil(y + h) - 1, clipped to the 8 x 6 image.
    assert truth.boxes["dog"] == [(1, 1, 2, 2), (6, 4, 7, 5)]
    assert truth.boxes["person"] == [(3, 0, 7, 1), (0, 5, 3, 5)]
    assert torch.equal(coco.truth(2).masks["cat"], torch.from_numpy(CAT))
    assert coco.truth(3).masks == {} and coco.truth(3).boxes == {}


def test_crowd_regions_can_be_left_out(coco: CocoInstances) -> None:
    truth = coco.truth(1, crowd=False)
    assert torch.equal(truth.masks["person"], torch.from_numpy(PERSON))
    assert truth.boxes["person"] == [(3, 0, 7, 1)]


def test_caption_words_refer_to_category_masks(coco: CocoInstances) -> None:
    truth = coco.truth(1)
    dogs = truth.referent(Target(3, "dogs"))
    assert dogs is not None and dogs.category == "dog"
    assert torch.equal(dogs.mask, torch.from_numpy(DOG_SQUARE | DOG_CORNER))
    assert dogs.boxes == ((1, 1, 2, 2), (6, 4, 7, 5))
    for word in ("Puppies.", "man", "women", "children", "people"):
        referent = truth.referent(Target(0, word))
        assert referent is not None, word
        assert referent.category == ("dog" if word == "Puppies." else "person")
    assert truth.referent(Target(1, "sky")) is None  # names no category
    assert truth.referent(Target(2, "cat")) is None  # a category, but not in this image
    assert truth.referent(Target(2, "plant")) is None


def test_words_are_restricted_to_the_files_categories(coco: CocoInstances) -> None:
    words = coco.words({"Pooch": "dog", "vehicle": "car", "dog": "cat", "houseplant":
                        "potted plant"})
    # own one-word names win over a synonym ("dog" stays a dog); "car" is not in the file.
    assert words == {"pooch": "dog", "houseplant": "potted plant", "dog": "dog",
                     "cat": "cat", "person": "person"}
    default = coco.truth(1).words
    assert default["plant"] == "potted plant"
    assert "table" not in default and "vehicle" not in default
    assert default["puppy"] == "dog" and default["kitten"] == "cat"
    assert set(default.values()) == set(coco.categories())


def test_a_synonym_must_be_one_word(coco: CocoInstances) -> None:
    with pytest.raises(InputError, match="synonym 'hot dog'.*single word"):
        coco.words({"hot dog": "dog"})


def test_coco_words_cover_the_80_categories() -> None:
    assert set(COCO_WORDS.values()) == set(COCO_80) and len(COCO_80) == 80
    for word, category in COCO_WORDS.items():
        assert word.isalpha() and word == word.lower(), word
        if word in COCO_80:
            assert category == word, word  # no one-word category name names another one
    for word, category in {
        "man": "person", "men": "person", "women": "person", "people": "person",
        "children": "person", "mice": "mouse", "knives": "knife", "sheep": "sheep",
        "table": "dining table", "television": "tv", "sofa": "couch", "phone": "cell phone",
        "cellphone": "cell phone", "motorbike": "motorcycle", "plane": "airplane",
        "bike": "bicycle", "vehicle": "car", "skier": "person", "surfer": "person",
    }.items():
        assert COCO_WORDS[word] == category, word


# --- errors -------------------------------------------------------------------------------------

def _drop(key: str, where: str = "annotations", n: int = 0):
    def edit(data: dict) -> None:
        del data[where][n][key]
    return edit


def _set(value, key: str, where: str = "annotations", n: int = 0):
    def edit(data: dict) -> None:
        data[where][n][key] = value
    return edit


def _duplicate(where: str):
    def edit(data: dict) -> None:
        data[where].append(copy.deepcopy(data[where][0]))
    return edit


ERRORS = [
    (lambda data: data.pop("categories"), r"has no 'categories' key"),
    (_drop("height", "images", 1), r"images\[1\] has no 'height' key"),
    (_drop("segmentation"), r"annotations\[0\] has no 'segmentation' key"),
    (_drop("bbox", n=2), r"annotations\[2\] has no 'bbox' key"),
    (_drop("iscrowd"), r"annotations\[0\] has no 'iscrowd' key"),
    (_drop("name", "categories", 2), r"categories\[2\] has no 'name' key"),
    (_set(99, "image_id", n=1), r"annotations\[1\] annotates image id 99, which has no entry"),
    (_set(42, "category_id"), r"annotations\[0\] names category id 42, which has no entry"),
    (_set("abc", "segmentation"), (r"annotations\[0\] 'segmentation': "
                                   r"segmentation 'abc' is neither polygons")),
    (_set(5, "segmentation"), r"segmentation 5 is neither polygons"),
    (_set({"size": [6, 8]}, "segmentation"), r"segmentation \{'size': \[6, 8\]\} is neither"),
    (_set(["1 2 3"], "segmentation"), r"polygon 0 must be a list of coordinates, got '1 2 3'"),
    (_set([[1, 2, 3]], "segmentation"), r"polygon 0 must have an even.*got 3"),
    (_set([[1, 2, "x", 4]], "segmentation"), r"polygon 0 coordinate 'x' is not a number"),
    (_set({"size": [5, 8], "counts": [48]}, "segmentation"),
     (r"annotations\[0\] 'segmentation': RLE size \[5, 8\] disagrees with its image's "
      r"\[height, width\] \[6, 8\]")),
    (_set({"size": [6, 8], "counts": [1, 2]}, "segmentation", n=2),
     (r"annotations\[2\] 'segmentation': RLE run lengths sum to 3, not height \* width = "
      r"6 \* 8 = 48")),
    (_set({"size": [6, 8], "counts": "3S11nN"}, "segmentation"), r"sum to 40, not .* = 48"),
    (_set({"size": [6, 8], "counts": [-2, 50]}, "segmentation"), r"run length -2 is negative"),
    (_set({"size": [6, 8], "counts": [1.5, 46.5]}, "segmentation"),
     r"run length 1.5 is not an integer"),
    (_set({"size": [6, 8], "counts": 48}, "segmentation"), r"RLE counts must be .* got 48"),
    (_set({"size": [6, 8], "counts": "0S"}, "segmentation"), r"'0S' end in the middle"),
    (_set({"size": [6, 8], "counts": "0~"}, "segmentation"), r"character '~' at 1 is not"),
    (_set({"size": "6x8", "counts": [48]}, "segmentation"), r"size must be .* got '6x8'"),
    (_set([1, 2, 3], "bbox"), r"annotations\[0\] 'bbox' must be .* got \[1, 2, 3\]"),
    (_set([1, 2, -3, 4], "bbox"), r"'bbox' must be .* got \[1, 2, -3, 4\]"),
    (_set(2, "iscrowd"), r"annotations\[0\] 'iscrowd' must be 0 or 1, got 2"),
    (_set("1", "category_id"), r"annotations\[0\] 'category_id' must be an integer, got '1'"),
    (_set(0, "width", "images"), r"images\[0\] 'width' must be positive, got 0"),
    (_duplicate("images"), r"image id 3 is listed twice \(images\[3\]\)"),
    (_duplicate("categories"), r"category id 18 is listed twice \(categories\[4\]\)"),
]


@pytest.mark.parametrize(("edit", "message"), ERRORS)
def test_broken_files_fail_when_opened(tmp_path: Path, edit, message: str) -> None:
    data = instances_json()
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(InputError, match=message) as caught:
        CocoInstances(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(repr(str(path)))


def test_decoding_errors_name_the_bad_value() -> None:
    with pytest.raises(InputError, match=r"segmentation 7 is neither"):
        decode_segmentation(7, 2, 2)
    with pytest.raises(InputError, match=r"RLE size \[2, 3\] disagrees .* \[3, 2\]"):
        decode_segmentation({"size": [2, 3], "counts": [6]}, 3, 2)
    with pytest.raises(InputError, match=r"sum to 5, not height \* width = 2 \* 3 = 6"):
        decode_segmentation({"size": [2, 3], "counts": [1, 4]}, 2, 3)


def test_unknown_image_id_lists_known_ones(coco: CocoInstances) -> None:
    with pytest.raises(InputError, match=r"image id 9 is not in .*known ids: 1, 2, 3"):
        coco.truth(9)
    with pytest.raises(InputError, match=r"image id 9 is not in"):
        coco.size(9)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"COCO instances file .*nope\.json.* does not exist"):
        CocoInstances(tmp_path / "nope.json")
