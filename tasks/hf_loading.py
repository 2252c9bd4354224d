"""Loading Hugging Face captioning and VQA models from a local ``save_pretrained`` directory.

Nothing downloads: the model, its image processor and its tokenizer must all be in the
directory, and the adapter is picked from the architecture the config names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vlx.errors import InputError
from vlx.tasks.captioning import Captioning
from vlx.tasks.hf_captioning import BlipCaptioner, VisionEncoderDecoderCaptioner
from vlx.tasks.hf_vlm import FAMILIES, VLMCaptioner, VLMQuestionAnswering
from vlx.tasks.hf_vqa import BlipVQA, ViltVQA
from vlx.tasks.vqa import QuestionAnswering

HF_PREFIX = "hf:"
CAPTIONERS = {
    "VisionEncoderDecoderModel": VisionEncoderDecoderCaptioner,
    "BlipForConditionalGeneration": BlipCaptioner,
    **dict.fromkeys(FAMILIES, VLMCaptioner),
}
VQA_MODELS = {"ViltForQuestionAnswering": ViltVQA, "BlipForQuestionAnswering": BlipVQA,
              **dict.fromkeys(FAMILIES, VLMQuestionAnswering)}
"""Generative VLMs (LLaVA, LLaVA-NeXT, Qwen2-VL, PaliGemma, Idefics3 / SmolVLM) do both: a
description explained word by word, and answers generated or forced."""
# Without one of these, AutoTokenizer silently builds a tokenizer that reads every word as
# unknown, so their absence is checked first.
TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
    "sentencepiece.bpe.model",
)


def hf_directory(name: str) -> Path:
    """The directory of an ``hf:PATH`` model name."""
    if not name.startswith(HF_PREFIX) or not name[len(HF_PREFIX) :]:
        raise InputError(
            f"unknown model {name!r}; give a shipped model or hf:PATH (a save_pretrained "
            "directory with its processor and tokenizer)"
        )
    return Path(name[len(HF_PREFIX) :])


def load_hf_captioner(
    path: str | Path, device: str | torch.device = "cpu", group_words: bool = True
) -> Captioning:
    """A VisionEncoderDecoder (ViT or Swin encoder), BLIP or generative VLM captioner from
    ``path``."""
    adapter, parts = _load(Path(path), CAPTIONERS, "captioning")
    return adapter(*parts, device=device, group_words=group_words, name=f"{HF_PREFIX}{path}")


def load_hf_vqa(path: str | Path, device: str | torch.device = "cpu") -> QuestionAnswering:
    """A ViLT, BLIP or generative VLM question answerer from ``path``."""
    adapter, parts = _load(Path(path), VQA_MODELS, "VQA")
    return adapter(*parts, device=device, name=f"{HF_PREFIX}{path}")


def _load(path: Path, adapters: dict[str, type], task: str) -> tuple[type, tuple]:
    """The adapter class for the directory's architecture and (model, image processor,
    tokenizer), or (model, processor) for a generative VLM, after checking every file they
    need is there."""
    if not path.is_dir():
        raise InputError(f"hf model directory {str(path)!r} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InputError(f"{str(path)!r} has no config.json; save the model with save_pretrained")
    config = json.loads(config_file.read_text())
    architecture = next((a for a in config.get("architectures") or [] if a in adapters), None)
    if architecture is None:
        named = ", ".join(config.get("architectures") or [config.get("model_type", "unknown")])
        raise InputError(
            f"{str(path)!r} holds a {named}, not a {task} model vlx explains; "
            f"supported: {', '.join(adapters)}"
        )
    encoder = config.get("encoder", {})
    if architecture == "VisionEncoderDecoderModel" and "patch_size" not in encoder:
        raise InputError(
            f"the encoder of {str(path)!r} ({encoder.get('model_type', 'unknown')}) has no "
            "patch grid; supported encoders: ViT-like and Swin"
        )
    _require_processor(path)
    import transformers
    from transformers.utils import logging

    # A local load takes well under a second; its progress bar would only clutter stderr.
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model = getattr(transformers, architecture).from_pretrained(path, local_files_only=True)
    finally:
        if bars:
            logging.enable_progress_bar()
    if architecture in FAMILIES:  # the processor's chat template makes the prompts
        return adapters[architecture], (
            model, transformers.AutoProcessor.from_pretrained(path, local_files_only=True))
    image_processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return adapters[architecture], (model, image_processor, tokenizer)


def _require_processor(path: Path) -> None:
    processor = path / "processor_config.json"
    has_images = (path / "preprocessor_config.json").is_file() or (
        processor.is_file() and "image_processor" in json.loads(processor.read_text())
    )
    if not has_images:
        raise InputError(
            f"{str(path)!r} has no preprocessor_config.json (the image processor); save the "
            "processor with processor.save_pretrained(PATH) next to the model"
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"{str(path)!r} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer with tokenizer.save_pretrained(PATH) next to the model"
        )
