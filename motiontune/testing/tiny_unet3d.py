"""Tiny random ModelScope/ZeroScope-style model (UNet3DConditionModel + per-frame AutoencoderKL + CLIP)."""

from __future__ import annotations

from motiontune.testing.tiny import TINY_WORDS, register_tiny
from motiontune.testing.tokenizer import build_word_tokenizer


@register_tiny("unet3d")
def build_tiny_unet3d(folder: str, seed: int = 0) -> str:
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_word_tokenizer(TINY_WORDS, max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=16, projection_dim=32,
                       pad_token_id=0, bos_token_id=1, eos_token_id=1)
    )
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2,
                        sample_size=16)
    unet = UNet3DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, num_train_timesteps=1000)
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=scheduler)
    pipe.save_pretrained(folder)
    return folder
