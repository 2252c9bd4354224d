"""Reading the images people have: modes, bit depths, broken files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlx.errors import InputError
from vlx.images import Preprocess, load_image, to_rgb


def test_16_bit_grayscale_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    rgb = np.asarray(load_image(path))
    assert rgb[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [0, 0, 255]]]


def test_grayscale_becomes_three_equal_channels():
    gray = Image.fromarray(np.array([[10, 200]], dtype=np.uint8))
    assert np.asarray(to_rgb(gray)).tolist() == [[[10] * 3, [200] * 3]]


@pytest.mark.parametrize("content", [b"", b"GIF89a-not-really", b"\x89PNG\r\n\x1a\n-broken"])
def test_broken_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken.png"):
        load_image(path)


def test_preprocess_resizes_whole_image_and_normalises():
    image = Image.new("RGB", (30, 10), (255, 0, 127))
    x = Preprocess(size=(8, 16), mean=(0.5,) * 3, std=(0.5,) * 3)(image)
    assert x.shape == (3, 8, 16)
    assert x[0].allclose(x.new_tensor(1.0)) and x[1].allclose(x.new_tensor(-1.0))
