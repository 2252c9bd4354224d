"""Tiny Hugging Face captioning and VQA models, built offline for the HF adapter tests.

Random weights from small configs, saved with ``save_pretrained`` next to an image processor
and a tokenizer built from a local vocabulary, the way a user's directory looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]",
    "a", "red", "circle", "blue", "square", "green", "star", "left", "of", "on", "the",
    "what", "color", "is", "there", "yes", "no", "##s", "?",
]
CORPUS = [
    "a red circle left of a blue square",
    "a green star on the left of a red circle",
    "what color is the circle? is there a star?",
]
LABELS = ["yes", "no", "red", "blue", "green"]
BLOCK = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64}


def bert_tokenizer():
    """A WordPiece tokenizer over ``WORDS``; [DEC] is BLIP's decoder start (bos) token."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}, bos_token="[DEC]")


def gpt2_tokenizer():
    """A byte-level BPE tokenizer trained on ``CORPUS``, as GPT-2's is (its own end token)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 3, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    end = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=end,
                                   eos_token=end, unk_token=end, pad_token=end)


def noise_image(width: int = 90, height: int = 60, seed: int = 0):
    """A seeded RGB noise image (Pillow's ``effect_noise`` draws from an unseeded generator)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).normal(128, 60, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _save(directory: Path, model: nn.Module, *processors: object) -> Path:
    model.save_pretrained(directory)
    for processor in processors:
        processor.save_pretrained(directory)
    return directory


def vit_gpt2(directory: Path) -> Path:
    """VisionEncoderDecoder: ViT on non-square 32 x 48 inputs (a 4 x 6 grid) + GPT-2."""
    import transformers as hf

    tokenizer = gpt2_tokenizer()
    encoder = hf.ViTConfig(image_size=[32, 48], patch_size=8, **BLOCK)
    decoder = hf.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2,
                            n_head=2, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    config = hf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = hf.VisionEncoderDecoderModel(config)
    # Random weights: no empty caption, and words rather than stray bytes (ids 1-256).
    model.generation_config.min_new_tokens = 3
    model.generation_config.suppress_tokens = list(range(1, 257))
    processor = hf.ViTImageProcessor(size={"height": 32, "width": 48})
    return _save(directory, model, tokenizer, processor)


def swin_bert(directory: Path) -> Path:
    """VisionEncoderDecoder: a two-stage Swin on 40 x 56 inputs (10 x 14, then 5 x 7) + BERT."""
    import transformers as hf

    tokenizer = bert_tokenizer()
    encoder = hf.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                            num_heads=[1, 2], window_size=4)
    decoder = hf.BertConfig(vocab_size=len(WORDS), is_decoder=True, add_cross_attention=True,
                            max_position_embeddings=64, **BLOCK)
    config = hf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.cls_token_id
    config.eos_token_id = tokenizer.sep_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = hf.VisionEncoderDecoderModel(config)
    model.generation_config.min_new_tokens = 3
    processor = hf.ViTImageProcessor(size={"height": 40, "width": 56})
    return _save(directory, model, tokenizer, processor)


def _blip_config():
    import transformers as hf

    text = {"vocab_size": len(WORDS), "encoder_hidden_size": 32, "bos_token_id": 5,
            "pad_token_id": 0, "sep_token_id": 3, "eos_token_id": 3,
            "max_position_embeddings": 64, **BLOCK}
    # BlipVisionConfig's default initializer_range is 1e-10: its encoder would output the
    # same tokens for every image, and every map would be ~0.
    vision = {"image_size": 32, "patch_size": 8, "initializer_range": 0.02, **BLOCK}
    return hf.BlipConfig(vision_config=vision, text_config=text, projection_dim=32)


def _blip_processor():
    import transformers as hf

    return hf.BlipProcessor(hf.BlipImageProcessor(size={"height": 32, "width": 32}),
                            bert_tokenizer())


def blip_captioner(directory: Path) -> Path:
    """BlipForConditionalGeneration on 32 x 32 inputs (a 4 x 4 grid)."""
    import transformers as hf

    torch.manual_seed(0)
    model = hf.BlipForConditionalGeneration(_blip_config())
    model.generation_config.min_new_tokens = 3
    return _save(directory, model, _blip_processor())


def blip_vqa(directory: Path) -> Path:
    """BlipForQuestionAnswering on 32 x 32 inputs (a 4 x 4 grid)."""
    import transformers as hf

    torch.manual_seed(0)
    return _save(directory, hf.BlipForQuestionAnswering(_blip_config()), _blip_processor())


def vilt(directory: Path) -> Path:
    """ViltForQuestionAnswering over ``LABELS``; its processor keeps the aspect ratio
    (shortest edge 32, sides multiples of 8), so a 90 x 60 image becomes 32 x 48 (4 x 6)."""
    import transformers as hf

    config = hf.ViltConfig(vocab_size=len(WORDS), image_size=32, patch_size=8,
                           max_position_embeddings=40, id2label=dict(enumerate(LABELS)),
                           label2id={a: i for i, a in enumerate(LABELS)}, **BLOCK)
    torch.manual_seed(0)
    processor = hf.ViltProcessor(
        hf.ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=8), bert_tokenizer()
    )
    return _save(directory, hf.ViltForQuestionAnswering(config), processor)


def plant_bottom_right(model: nn.Module, conv: str, zeroed: Sequence[str]) -> RemovableHandle:
    """Make ``model`` see the bottom-right quadrant only.

    The patch convolution's output is zeroed outside the quadrant (a forward hook) and the
    parameters ``zeroed`` (position and modality embeddings) are zeroed, so every token
    outside the quadrant enters the encoder as an all-zero vector: nothing the model computes
    depends on the rest of the image, and a layer norm maps those tokens to exactly zero.
    """
    with torch.no_grad():
        for name in zeroed:
            model.get_parameter(name).zero_()

    def keep_quadrant(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        h, w = output.shape[-2:]
        mask = torch.zeros(h, w, dtype=output.dtype, device=output.device)
        mask[h // 2 :, w // 2 :] = 1
        return output * mask

    return model.get_submodule(conv).register_forward_hook(keep_quadrant)


def outside_bottom_right(maps: torch.Tensor) -> torch.Tensor:
    """The maps with their bottom-right quadrant set to zero."""
    h, w = maps.shape[-2:]
    outside = maps.clone()
    outside[..., h // 2 :, w // 2 :] = 0
    return outside
