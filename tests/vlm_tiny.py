"""Tiny generative vision-language models, built offline for the VLM adapter tests.

Random seeded weights from small configs of five families (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL,
PaliGemma, Idefics3/SmolVLM), saved with ``save_pretrained`` next to their processor (image
processor + a byte-level BPE tokenizer trained on a few sentences + a chat template), so that
each directory looks like a user's downloaded model folder and loads with ``AutoProcessor`` and
``AutoModelForImageTextToText`` offline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from hf_tiny import CORPUS
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, ProcessorMixin

QUESTION = "what color is the circle?"
VLM_CORPUS = [
    *CORPUS,
    QUESTION,
    "what color is the square? describe the image.",
    "yes no a cat and a dog",
    "answer en caption en",
    "USER: ASSISTANT: User: Assistant: user assistant",
]
# Small text towers: 2 heads of 16 dims (the M-RoPE sections of Qwen2-VL split those 16 / 2).
LM = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
      "max_position_embeddings": 512}
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2}

# Chat templates: one turn is ``open`` + (image placeholder | text)* + ``close``; an added
# generation prompt is ``generation``. Jinja expressions may use ``message``.
_TEMPLATE = (
    "{% for message in messages %}{open}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{image}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{close}{% endfor %}"
    "{% if add_generation_prompt %}{generation}{% endif %}"
)


def user_turn(text: str = QUESTION) -> list[dict]:
    """A one-turn conversation: an image, then ``text`` (what the chat templates expect)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def prompt(processor: ProcessorMixin, text: str = QUESTION) -> str:
    """The prompt a user would write for one image and ``text``: the chat template's, or for
    PaliGemma (no template) its VQA task prefix; its processor adds <bos> and the newline."""
    if processor.chat_template is None:
        return f"{processor.image_token}answer en {text}"
    return processor.apply_chat_template(user_turn(text), add_generation_prompt=True)


def _chat_template(opening: str, image: str, closing: str, generation: str) -> str:
    return (_TEMPLATE.replace("{open}", opening).replace("{image}", image)
            .replace("{close}", closing).replace("{generation}", generation))


VICUNA = _chat_template("{{ message['role'] | upper }}: ", "<image>\n", " ", "ASSISTANT:")


def bpe_tokenizer(specials: Sequence[str], **named: str) -> PreTrainedTokenizerFast:
    """A fast byte-level BPE tokenizer trained on ``VLM_CORPUS``: any text encodes (no unknown
    words, newlines included), and ``specials`` are single unsplit tokens with the first ids.
    ``named`` sets the named special tokens (bos_token=..., eos_token=..., pad_token=...)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(VLM_CORPUS * 3, vocab_size=len(specials) + 256 + 160, min_frequency=1,
                            special_tokens=list(specials), show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, **named)


def _finish(directory: Path, model: nn.Module, processor) -> Path:
    """Generation settings for random weights, then save. At least 3 new tokens (no empty
    answer); words rather than stray bytes; and no added token but the end one (PaliGemma's
    location tokens included): a generated image placeholder would break a teacher-forced pass
    over prompt + answer, whose image tokens must match the image's features in number."""
    tokenizer = processor.tokenizer
    bytes_ = [i for token, i in tokenizer.get_vocab().items() if len(token) == 1]  # alphabet
    added = [i for i in tokenizer.added_tokens_decoder if i != tokenizer.eos_token_id]
    generation = model.generation_config
    generation.min_new_tokens = 3
    generation.suppress_tokens = sorted(added + bytes_)
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _text_ids(tokenizer) -> dict[str, int]:
    return {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}


def _clip_processor(processor_class, image_processor, tokenizer, patch_size: int):
    # CLIP adds a CLS token, which the "default" feature strategy drops: patches only.
    return processor_class(image_processor, tokenizer, patch_size=patch_size,
                           vision_feature_select_strategy="default",
                           num_additional_image_tokens=1, chat_template=VICUNA)


LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
LLAVA_NAMED = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def llava(directory: Path) -> Path:
    """LLaVA-1.5: a CLIP tower on 32 x 32 crops (a 4 x 4 grid + CLS), a 2-layer MLP projector
    and a Llama LM; the processor expands ``<image>`` to the 16 patch tokens."""
    import transformers as hf

    processor = _clip_processor(
        hf.LlavaProcessor,
        hf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        bpe_tokenizer(LLAVA_SPECIALS, **LLAVA_NAMED), patch_size=8)
    tokenizer = processor.tokenizer
    config = hf.LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8,
                       "projection_dim": 32, **VISION},
        text_config={"model_type": "llama", **LM, **_text_ids(tokenizer)},
        image_token_index=processor.image_token_id, image_seq_length=16,
    )
    torch.manual_seed(0)
    return _finish(directory, hf.LlavaForConditionalGeneration(config), processor)


def llava_next(directory: Path) -> Path:
    """LLaVA-NeXT "anyres": 32 x 32 tiles of a CLIP tower (4 x 4 patches each) on a grid
    chosen among 32 x 64, 64 x 32 and 64 x 64, after a 32 x 32 base image of the whole."""
    import transformers as hf

    pinpoints = [[32, 64], [64, 32], [64, 64]]
    image_processor = hf.LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=pinpoints)
    processor = _clip_processor(hf.LlavaNextProcessor, image_processor,
                                bpe_tokenizer(LLAVA_SPECIALS, **LLAVA_NAMED), patch_size=8)
    config = hf.LlavaNextConfig(
        vision_config={"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8,
                       "projection_dim": 32, **VISION},
        text_config={"model_type": "llama", **LM, **_text_ids(processor.tokenizer)},
        image_token_index=processor.image_token_id, image_grid_pinpoints=pinpoints,
        image_seq_length=16,
    )
    torch.manual_seed(0)
    return _finish(directory, hf.LlavaNextForConditionalGeneration(config), processor)


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def qwen2_vl(directory: Path) -> Path:
    """Qwen2-VL: dynamic resolution (sides multiples of 8, at most 48 x 48 pixels' worth) cut
    into 4 x 4 patches, merged 2 x 2 into one LM token each; M-RoPE sections 2 + 3 + 3 = 16 / 2."""
    return _qwen(directory, "Qwen2VL", {"embed_dim": 32, "hidden_size": LM["hidden_size"],
                                        "mlp_ratio": 2})


def qwen2_5_vl(directory: Path) -> Path:
    """Qwen2.5-VL: Qwen2-VL's processor, and a tower whose first block attends within windows
    of 2 x 2 merged tokens (16 px) and whose second attends to the whole image, its patch
    rows reordered window by window in between."""
    return _qwen(directory, "Qwen2_5_VL", {
        "hidden_size": 32, "intermediate_size": 64, "out_hidden_size": LM["hidden_size"],
        "window_size": 16, "fullatt_block_indexes": [1]})


def _qwen(directory: Path, family: str, tower: dict) -> Path:
    import transformers as hf

    tokenizer = bpe_tokenizer(QWEN_SPECIALS, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                              pad_token="<|endoftext|>")
    pixels = {"patch_size": 4, "temporal_patch_size": 2, "merge_size": 2,
              "min_pixels": 16 * 16, "max_pixels": 48 * 48}
    processor = getattr(hf, f"{family}Processor")(
        hf.Qwen2VLImageProcessor(**pixels), tokenizer, hf.Qwen2VLVideoProcessor(**pixels),
        chat_template=_chat_template("<|im_start|>{{ message['role'] }}\n",
                                     "<|vision_start|><|image_pad|><|vision_end|>",
                                     "<|im_end|>\n", "<|im_start|>assistant\n"))
    ids = tokenizer.convert_tokens_to_ids
    config = getattr(hf, f"{family}Config")(
        vision_config={"depth": 2, "num_heads": 2, "patch_size": 4, "temporal_patch_size": 2,
                       "spatial_merge_size": 2, **tower},
        text_config={**LM, **_text_ids(tokenizer),
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [2, 3, 3]}},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    model = getattr(hf, f"{family}ForConditionalGeneration")(config)
    return _finish(directory, model, processor)


def paligemma(directory: Path) -> Path:
    """PaliGemma: a SigLIP tower on 32 x 32 inputs (an 8 x 8 grid, no CLS), a linear projector
    and a Gemma LM. No chat template: the processor takes the prompt ("answer en ...")."""
    import transformers as hf

    tokenizer = bpe_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], pad_token="<pad>",
                              eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")
    image_processor = hf.SiglipImageProcessor(size={"height": 32, "width": 32},
                                              image_seq_length=64)
    # Adds PaliGemma's 1024 <locNNNN> and 128 <segNNN> tokens: the LM vocabulary counts them.
    processor = hf.PaliGemmaProcessor(image_processor, tokenizer)
    config = hf.PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "image_size": 32, "patch_size": 4,
                       "vision_use_head": False, **VISION},
        text_config={"model_type": "gemma", **LM, **_text_ids(processor.tokenizer)},
        image_token_index=processor.image_token_id, projection_dim=LM["hidden_size"],
        hidden_size=LM["hidden_size"], vocab_size=len(processor.tokenizer),
    )
    torch.manual_seed(0)
    return _finish(directory, hf.PaliGemmaForConditionalGeneration(config), processor)


IDEFICS3_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
    "<image>", "<global-img>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
]


def idefics3(directory: Path) -> Path:
    """Idefics3 (SmolVLM layout): images resized to a 64 px longest edge and split into 32 x 32
    tiles + a 32 x 32 global image; a SigLIP-like tower (4 px patches, an 8 x 8 grid per tile),
    a pixel shuffle (scale 2) to 4 x 4 = 16 tokens per tile, and a Llama LM."""
    return _finish(directory, *idefics3_parts())


def idefics3_parts(tile: int = 32, longest: int = 64, patch: int = 4, scale: int = 2,
                   vision: dict | None = None, lm: dict | None = None) -> tuple:
    """An Idefics3 model (random weights) and its processor, at any size: the tests' tiny
    one, or SmolVLM-256M's layer sizes for the benchmarks."""
    import transformers as hf

    tokenizer = bpe_tokenizer(IDEFICS3_SPECIALS, bos_token="<|im_start|>",
                              eos_token="<end_of_utterance>", pad_token="<|endoftext|>")
    image_processor = hf.Idefics3ImageProcessor(
        size={"longest_edge": longest}, max_image_size={"longest_edge": tile},
        do_image_splitting=True)
    processor = hf.Idefics3Processor(
        image_processor, tokenizer, image_seq_len=(tile // patch // scale) ** 2,
        chat_template=_chat_template("<|im_start|>{{ message['role'] | capitalize }}:",
                                     "<image>", "<end_of_utterance>\n", "Assistant:"))
    text = {"model_type": "llama", **(lm or LM), **_text_ids(tokenizer)}
    text["vocab_size"] = max(text["vocab_size"], (lm or {}).get("vocab_size", 0))
    config = hf.Idefics3Config(
        vision_config={"image_size": tile, "patch_size": patch, **(vision or VISION)},
        text_config=text, image_token_id=processor.image_token_id, scale_factor=scale,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return hf.Idefics3ForConditionalGeneration(config), processor


VLM_FAMILIES: dict[str, Callable[[Path], Path]] = {
    "llava": llava,
    "llava_next": llava_next,
    "qwen2_vl": qwen2_vl,
    "qwen2_5_vl": qwen2_5_vl,
    "paligemma": paligemma,
    "idefics3": idefics3,
}
