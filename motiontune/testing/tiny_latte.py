"""Tiny random Latte (LatteTransformer3DModel + per-frame AutoencoderKL + T5) for tests."""

from __future__ import annotations

from motiontune.testing.tiny import TINY_WORDS, register_tiny
from motiontune.testing.tokenizer import build_word_tokenizer

#: frames of the tiny model (the transformer's fixed ``video_length``)
TINY_LATTE_FRAMES = 4


@register_tiny("latte")
def build_tiny_latte(folder: str, seed: int = 0) -> str:
    from diffusers import AutoencoderKL, DDIMScheduler, LattePipeline, LatteTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_word_tokenizer(TINY_WORDS, max_length=16)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    )
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2,
                        sample_size=16)
    # out_channels = 2 * in_channels: eps and the learned variance, as in Latte-1
    transformer = LatteTransformer3DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
        caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=8, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, video_length=TINY_LATTE_FRAMES,
    )
    scheduler = DDIMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear", clip_sample=False,
                              num_train_timesteps=1000)
    pipe = LattePipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder
