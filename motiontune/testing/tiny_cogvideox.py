"""Tiny random CogVideoX (1.0 layout, sin-cos positions) saved in diffusers layout."""

from __future__ import annotations

from motiontune.testing.tiny import TINY_WORDS, register_tiny
from motiontune.testing.tokenizer import build_word_tokenizer

TINY_TEXT_TOKENS = 16


def tiny_cogvideox_components(rope: bool = False, patch_size_t: int | None = None) -> dict:
    """Components of a tiny CogVideoXPipeline; ``rope=True`` gives the 5b/1.5 RoPE variant
    (``patch_size_t=2`` additionally patchifies time as CogVideoX 1.5 does)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_word_tokenizer(TINY_WORDS, max_length=TINY_TEXT_TOKENS)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    )
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16 if rope else 8, in_channels=4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=2, sample_width=8, sample_height=8, sample_frames=9,
        patch_size=2, patch_size_t=patch_size_t, temporal_compression_ratio=4,
        max_text_seq_length=TINY_TEXT_TOKENS, use_rotary_positional_embeddings=rope,
    )
    # the published CogVideoX scheduler configuration (v-prediction, zero terminal SNR, SNR shift)
    scheduler = CogVideoXDDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction",
        timestep_spacing="trailing", rescale_betas_zero_snr=True, snr_shift_scale=3.0,
    )
    return dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)


@register_tiny("cogvideox")
def build_tiny_cogvideox(folder: str, seed: int = 0) -> str:
    from diffusers import CogVideoXPipeline

    CogVideoXPipeline(**tiny_cogvideox_components()).save_pretrained(folder)
    return folder
