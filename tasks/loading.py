"""Every adapter by the name a person gives a model: what the commands and the page load.

``--model`` names a classifier (``vlx.models.classifiers.MODEL_FORMS``), a captioner
(``shapes``, a checkpoint of ``vlx train captioner``, ``hf:DIR``) or a VQA model
(``coattention``, ``lstm-cnn``, a checkpoint of ``vlx train vqa``, ``hf:DIR``).
"""

from __future__ import annotations

import torch

from vlx.errors import InputError
from vlx.task import Task

KINDS = ("classify", "caption", "vqa")
DEFAULTS = {"classify": "efficientnet_lite0", "caption": "shapes", "vqa": "coattention"}


def load_task(kind: str, model: str | None = None, device: str | torch.device = "cpu") -> Task:
    """The adapter of task ``kind`` for the model named ``model`` (default: the shipped one)."""
    if kind not in KINDS:
        raise InputError(f"unknown task {kind!r}; valid: {', '.join(KINDS)}")
    name = model or DEFAULTS[kind]
    if kind == "classify":
        from vlx.tasks.classification import ImageClassification

        return ImageClassification.load(name, device)
    if name.startswith("hf:"):
        from vlx.tasks.hf_loading import hf_directory, load_hf_captioner, load_hf_vqa

        load = load_hf_captioner if kind == "caption" else load_hf_vqa
        return load(hf_directory(name), device)
    if kind == "caption":
        from vlx.tasks.captioning import ShowAndTellCaptioner

        if name in ("shapes", "captioner"):
            return ShowAndTellCaptioner.load(None, device)
        if not name.endswith(".pt"):
            raise InputError(
                f"unknown captioner {name!r}; valid: shapes (the shipped one), a checkpoint "
                "file (.pt) from `vlx train captioner`, or hf:PATH (a save_pretrained directory)"
            )
        return ShowAndTellCaptioner.load(name, device)
    from vlx.tasks.vqa import ShapesVQA

    return ShapesVQA.load(name, device)
