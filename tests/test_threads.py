"""Explaining one shared model from several threads at once gives each thread its own,
correct explanation (captures belong to the calling thread)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

import vlx
from vlx.methods import explain


def test_threads_explaining_one_model_get_their_own_maps(resnet18, images64, watch) -> None:
    guard = watch(resnet18, images64)
    jobs = [("gradcam", [[i % 1000]] * 3) for i in range(6)] + [
        ("guided-backprop", [[i]] * 3) for i in range(3)] + [("counterfactual", [[7]] * 3)]
    alone = [explain(resnet18, images64, method=m, targets=t, layer="layer4") for m, t in jobs]

    def run(job):
        method, targets = job
        return explain(resnet18, images64, method=method, targets=targets, layer="layer4")

    for _ in range(3):
        with ThreadPoolExecutor(max_workers=4) as pool:
            together = list(pool.map(run, jobs))
        for a, b in zip(alone, together):
            torch.testing.assert_close(a.maps, b.maps, rtol=1e-5, atol=1e-6)
    guard.check()


def test_separate_gradcam_objects_in_threads(resnet18, images64) -> None:
    cams = [vlx.GradCAM(resnet18, "layer4") for _ in range(4)]
    expected = [cam(images64, targets=c) for c, cam in enumerate(cams)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda c: cams[c](images64, targets=c), range(4)))
    for a, b in zip(expected, got):
        torch.testing.assert_close(a.maps, b.maps, rtol=1e-5, atol=1e-6)


def test_captioner_threads_keep_the_recurrent_kernels_switch(tmp_path) -> None:
    """The oneDNN / cuDNN switches are process-wide: threads attributing LSTMs at once must
    leave them as they found them."""
    from PIL import Image

    from vlx.task import Example
    from vlx.tasks.captioning import ShowAndTellCaptioner

    captioner = ShowAndTellCaptioner.load()
    before = (torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled)
    image = Image.new("RGB", (128, 128), (200, 30, 30))
    batch = captioner.prepare([Example(image, "a large red circle on a plain background")])
    targets = captioner.targets(batch)
    alone = captioner.explain(batch, targets).maps
    with ThreadPoolExecutor(max_workers=3) as pool:
        maps = list(pool.map(lambda _: captioner.explain(batch, targets).maps, range(6)))
    assert all(torch.allclose(m, alone, atol=1e-6) for m in maps)
    assert (torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled) == before
