"""Dissection: the IoU tally against hand-computed values, a hand-built red detector, the
thresholds' bounded sample, tally.csv / JSON files, and hook hygiene."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from test_dissect_broden import write_fixture
from torch import nn

from vlx.dissect import Dissection, cached_dissection, dissect, load_probe
from vlx.dissect.broden import BrodenProbe
from vlx.dissect.quantile import UnitQuantiles
from vlx.dissect.tally import CategoryScore, IoUTally
from vlx.errors import InputError


def raw_channels(images: list[Image.Image]) -> torch.Tensor:
    """The images' R and G values (0-255) as two units: the pixels *are* the activations."""
    arrays = [np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[:2] for image in images]
    return torch.from_numpy(np.stack(arrays))


@pytest.fixture
def two_image_probe(tmp_path) -> BrodenProbe:
    """The reader's fixture, with unit 0 (red channel) at 200 on image a's top-left 2x2 and on
    image b's bottom-right 2x2, 0 elsewhere; unit 1 (green channel) is 0 everywhere."""
    root = write_fixture(tmp_path)
    for name, rows in (("a", slice(0, 2)), ("b", slice(2, 4))):
        pixels = np.zeros((4, 4, 3), dtype=np.uint8)
        pixels[rows, rows, 0] = 200
        Image.fromarray(pixels).save(root / "images" / f"{name}.png")
    return BrodenProbe(root)


def identity_model() -> nn.Module:
    return nn.Sequential(nn.Identity()).eval()


@pytest.mark.parametrize("batch_size", [1, 2])
def test_iou_tally_matches_hand_computed_values(two_image_probe, batch_size):
    # Thresholds: 32 values per unit, 24 zeros then 8 x 200; the 0.75 quantile lies at rank
    # 0.75 * 31 = 23.25, a quarter of the way from 0 to 200: 50 (unit 0) and 0 (unit 1).
    # Unit 0's mask is then image a's top-left 2x2 and image b's bottom-right 2x2.
    # colour is labelled on both images: activation 4 + 4 = 8.
    #   red (1): truth 6 (a), intersect 4          -> 4 / (8 + 6 - 4)  = 0.4
    #   blue (300): truth 2 (a) + 2 (b), both 1 + 2 -> 3 / (8 + 4 - 3)  = 1/3
    # scene is labelled on image a only: activation 4.
    #   beach (2): truth 16 (the whole of a), intersect 4 -> 4 / (4 + 16 - 4) = 0.25
    result = dissect(
        identity_model(), "0", two_image_probe, raw_channels, quantile=0.25,
        batch_size=batch_size, progress=False,
    )
    assert result.thresholds == pytest.approx([50.0, 0.0])
    assert result.units[0].label == "red" and result.units[0].iou == pytest.approx(0.4)
    assert result.by_category[0] == {
        "colour": CategoryScore("red", truth=6, activation=8, intersect=4, iou=pytest.approx(0.4)),
        "scene": CategoryScore("beach", truth=16, activation=4, intersect=4,
                               iou=pytest.approx(0.25)),
    }
    top = {(t.label, round(t.iou, 6)) for t in result.top[0]}
    assert top == {("red", 0.4), ("blue", round(1 / 3, 6)), ("beach", 0.25)}
    assert result.units[1].iou == 0.0 and not result.units[1].named
    assert result.examples[0] == [0, 1] or result.examples[0] == [1, 0]
    assert result.images == 2 and result.layer == "0"


def test_activations_are_upsampled_bilinearly_to_the_labels(two_image_probe):
    # A 2x2 average pool puts unit 0 at 2x2: image a [[200, 0], [0, 0]], image b the mirror.
    # Of its 8 values 6 are 0 and 2 are 200; with q = 1.9 / 7 the (1 - q) quantile lies at
    # rank 5.1: threshold 20. Bilinear 2 -> 4 (half-pixel centres) weighs the 200 by
    # [1, .75, .25, 0] along each axis, so image a's mask is where the product exceeds 0.1:
    # rows 0-1 x columns 0-2 and (2, 0), (2, 1): 8 pixels (nearest would give 4).
    #   red: truth 6, all inside: 6 / (16 + 6 - 6) = 0.375 (nearest: 0.4)
    #   blue: (0, 0) on a, (2, 2) and (2, 3) on b: 3 / (16 + 4 - 3) = 3 / 17
    #   beach: activation 8 on image a alone, truth 16: 8 / (8 + 16 - 8) = 0.5
    model = nn.Sequential(nn.AvgPool2d(2)).eval()
    result = dissect(model, "0", two_image_probe, raw_channels, quantile=1.9 / 7,
                     progress=False)
    assert result.thresholds[0] == pytest.approx(20.0)
    ious = {t.label: t.iou for t in result.top[0]}
    assert ious == pytest.approx({"beach": 0.5, "red": 0.375, "blue": 3 / 17})
    assert (result.units[0].category, result.units[0].label) == ("scene", "beach")


def test_concept_areas_count_even_where_no_unit_fires(two_image_probe):
    tally = IoUTally(2, two_image_probe.labels, two_image_probe.categories)
    tally.add(torch.zeros(0, 4, 4, dtype=torch.bool), two_image_probe[0],
              torch.zeros(0, dtype=torch.long))
    assert tally.truth[[1, 2, 300]].tolist() == [6, 16, 2]
    assert not tally.intersect.any() and not tally.activation.any()


def test_tally_csv_has_netdissect_columns_and_one_based_units(two_image_probe, tmp_path):
    result = dissect(identity_model(), "0", two_image_probe, raw_channels, quantile=0.25,
                     progress=False)
    files = result.write(tmp_path / "out")
    assert [f.name for f in files] == ["tally.csv", "dissection.json"]
    with files[0].open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == [
        "unit", "category", "label", "score",
        "colour-label", "colour-truth", "colour-activation", "colour-intersect", "colour-iou",
        "scene-label", "scene-truth", "scene-activation", "scene-intersect", "scene-iou",
    ]
    assert rows[1] == ["1", "colour", "red", "0.400000", "red", "6", "8", "4", "0.400000",
                       "beach", "16", "4", "4", "0.250000"]
    assert rows[2][:4] == ["2", "colour", "red", "0.000000"]
    again = Dissection.read(tmp_path / "out")
    assert again == result
    assert Dissection.read(files[1]).units == result.units


def test_cached_dissection_computes_once_per_model_layer_and_probe(two_image_probe, tmp_path):
    spec = str(two_image_probe.directory)
    first = cached_dissection(identity_model(), "0", spec, raw_channels, key="identity",
                              cache_dir=tmp_path, progress=False)
    # the same key is read back without running the model (this one would raise) ...
    broken = nn.Sequential(Boom()).eval()
    again = cached_dissection(broken, "0", spec, raw_channels, key="identity",
                              cache_dir=tmp_path, progress=False)
    assert again == first and first.probe == str(two_image_probe.directory.resolve())
    # ... while another key, layer or probe size is dissected afresh
    with pytest.raises(AssertionError, match="should have stopped"):
        cached_dissection(broken, "0", spec, raw_channels, key="broken", cache_dir=tmp_path,
                          progress=False)
    with pytest.raises(AssertionError, match="should have stopped"):
        cached_dissection(broken, "0", spec, raw_channels, key="identity", size=1,
                          cache_dir=tmp_path, progress=False)


def test_a_dissection_of_names_alone_can_be_written_and_read(tmp_path):
    from vlx.dissect import UnitName

    names = [UnitName(0, "colour", "red", 0.3), UnitName(1, "shape", "star", 0.01)]
    result = Dissection("layer", "shapes:3", names, categories=["colour", "shape"])
    result.write(tmp_path)
    assert Dissection.read(tmp_path) == result
    lines = (tmp_path / "tally.csv").read_text().splitlines()
    assert lines[1].startswith("1,colour,red,0.300000,") and lines[2].startswith("2,shape,star")
    assert result.named_per_category() == {"colour": 1, "shape": 0}
    with pytest.raises(ValueError, match="one entry for each of 2 units"):
        Dissection("layer", "p", names, thresholds=[1.0])
    with pytest.raises(ValueError, match="units\\[k\\] must describe unit k"):
        Dissection("layer", "p", names[::-1])


def test_read_rejects_a_file_that_is_not_a_dissection(tmp_path):
    (tmp_path / "dissection.json").write_text('{"layer": "x"}')
    with pytest.raises(InputError, match="not a dissection"):
        Dissection.read(tmp_path)
    with pytest.raises(InputError, match="no dissection"):
        Dissection.read(tmp_path / "missing")


class ColourDetectors(nn.Module):
    """Units that respond exactly to red and to blue ShapesWorld pixels (0-255 RGB input).

    Red objects are (220, 30, 30) +- 12 per channel, so R - G - B >= 124 on them and below 0
    on every other colour and on the grey backgrounds; blue (40, 70, 235) +- 12 gives
    B - R - G >= 89, purple at most 46. Scaled and clipped, each unit is 1 on its colour and
    0 elsewhere. The stride-2 average pool puts the layer at half resolution, so the
    dissection's bilinear upsampling to the labels is part of what is tested.
    """

    def __init__(self) -> None:
        super().__init__()
        self.detect = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.detect.weight.copy_(torch.tensor([[1.0, -1, -1], [-1, -1, 1]])[..., None, None])
            self.detect.bias.copy_(torch.tensor([-100.0, -60.0]))
        self.clip = nn.Hardtanh(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip(self.detect(x) / 10)


def test_a_red_detector_is_named_red(tmp_path, monkeypatch):
    monkeypatch.setenv("VLX_CACHE", str(tmp_path))
    probe = load_probe("shapes", 24)

    def prepare(images):
        return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)
                            for im in images])

    # A detector is 1 on its colour's pixels, about 1.5% of the probe: any threshold below 1
    # separates them, so the top 5% quantile (0 here) does; the default top 0.5% would cut
    # into the colour's own pixels (ties at 1 are not above a threshold of 1).
    result = dissect(ColourDetectors().eval(), "clip", probe, prepare, quantile=0.05,
                     batch_size=8, progress=False)
    red, blue = result.units
    assert (red.category, red.label) == ("colour", "red") and red.iou > 0.9
    assert (blue.category, blue.label) == ("colour", "blue") and blue.iou > 0.9


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the forward should have stopped at the dissected layer")


def test_forward_stops_at_the_layer_and_leaves_no_hooks(two_image_probe, watch):
    model = nn.Sequential(nn.Identity(), Boom()).eval()
    watched = watch(model)
    result = dissect(model, "0", two_image_probe, raw_channels, quantile=0.25, progress=False)
    assert result.units[0].label == "red"
    watched.check()


def test_errors_leave_no_hooks_and_name_the_problem(two_image_probe, watch):
    model = nn.Sequential(nn.Identity(), nn.Identity()).eval()
    watched = watch(model)
    with pytest.raises(InputError, match="did not run"):
        dissect(model, "1", two_image_probe, raw_channels, forward=model[0], progress=False)
    watched.check()
    with pytest.raises(InputError, match="unknown layer '2'"):
        dissect(model, "2", two_image_probe, raw_channels, progress=False)
    flat = nn.Sequential(nn.Flatten()).eval()
    with pytest.raises(InputError, match=r"\(N, K, h, w\)"):
        dissect(flat, "0", two_image_probe, raw_channels, progress=False)
    with pytest.raises(InputError, match="quantile"):
        dissect(model, "0", two_image_probe, raw_channels, quantile=1.5, progress=False)


def test_quantiles_are_exact_while_the_sample_holds_everything():
    values = torch.randn(3, 900, generator=torch.Generator().manual_seed(0))
    sample = UnitQuantiles(3, capacity=1000)
    for chunk in values.split(128, dim=1):
        sample.add(chunk)
    expected = torch.quantile(values, 0.995, dim=1)
    assert torch.allclose(sample.quantile(0.005), expected, atol=1e-6)


def test_reservoir_is_a_uniform_sample_of_a_long_stream():
    # The stream's values are their positions: a uniform sample of 0..N-1 has mean N/2
    # (standard error N / sqrt(12 * 2000) = 0.0065 N) and its top 0.5% sits near 0.995 N.
    n = 200_000
    sample = UnitQuantiles(1, capacity=2000, seed=1)
    for chunk in torch.arange(n, dtype=torch.float32)[None].split(3000, dim=1):
        sample.add(chunk)
    assert sample.seen == n
    assert abs(sample.sample.mean().item() / n - 0.5) < 0.03
    assert abs(sample.quantile(0.005).item() / n - 0.995) < 0.004


def test_accumulator_state_does_not_grow_with_the_probe(two_image_probe):
    """1x and 4x the probe leave the thresholds' sample and the tally the same size."""
    sizes = []
    for repeats in (1, 4):
        sample = UnitQuantiles(8, capacity=512)
        tally = IoUTally(8, two_image_probe.labels, two_image_probe.categories)
        for _ in range(repeats * 50):
            sample.add(torch.rand(8, 64))
            tally.add(torch.rand(8, 4, 4) > 0.5, two_image_probe[0])
        sizes.append((sample.state_bytes, tally.state_bytes))
    assert sizes[0] == sizes[1]
    assert sizes[0][0] == 8 * 512 * 4
