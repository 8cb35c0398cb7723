"""A tiny random CLIP model (with its tokenizer and image processor) saved to a folder, for
tests of the CLIP-based metrics and scores."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from motiontune.testing.tokenizer import build_word_tokenizer


def build_tiny_clip(folder: str | os.PathLike, words: Iterable[str], seed: int = 0) -> str:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    tok = build_word_tokenizer(words, max_length=16)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=1, pad_token_id=0,
                         bos_token_id=0),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)
