"""Tiny random configurations of each backbone, built from the real diffusers/transformers classes.

``build_tiny(family, folder)`` writes a model folder in diffusers layout (``model_index.json``)
that loads through exactly the code path a real checkpoint takes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from motiontune.testing.tokenizer import build_word_tokenizer

TINY_WORDS = (
    "a the red green blue yellow circle square triangle cat dog person moves left right up down "
    "on black white background jumps runs walks spins dances orbit zigzag in of and with"
).split()

_BUILDERS: dict[str, Callable[[str, int], str]] = {}


def register_tiny(family: str) -> Callable:
    def deco(fn: Callable[[str, int], str]) -> Callable[[str, int], str]:
        _BUILDERS[family] = fn
        return fn

    return deco


def tiny_families() -> list[str]:
    return sorted(_BUILDERS)


def build_tiny(family: str, folder: str | os.PathLike, seed: int = 0) -> str:
    """Build the tiny model of ``family`` with random weights (seeded) and save it to ``folder``."""
    if family not in _BUILDERS:
        raise KeyError(f"no tiny configuration for {family!r}; known: {tiny_families()}")
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    return _BUILDERS[family](folder, seed)


@register_tiny("wan")
def build_tiny_wan(folder: str, seed: int = 0) -> str:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_word_tokenizer(TINY_WORDS, max_length=16)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    )
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder
from motiontune.testing import tiny_latte, tiny_unet3d  # noqa: E402,F401  (registers builders)
from motiontune.testing import tiny_cogvideox, tiny_hunyuan_video  # noqa: E402,F401  (registers builders)
