"""Tiny random HunyuanVideo saved in diffusers layout.

The Llama tokenizer is a word-level tokenizer that splits text with the Llama 3 pre-tokenizer
pattern and knows the Llama 3 header tokens, so the pipeline's default prompt template puts
exactly ``crop_start`` (95) tokens in front of the prompt, as the real tokenizer does, and the
pipeline's own ``encode_prompt`` crops it correctly.
"""

from __future__ import annotations

import re

from motiontune.testing.tiny import TINY_WORDS, register_tiny
from motiontune.testing.tokenizer import build_word_tokenizer

#: the split pattern of the Llama 3 tokenizer (``pre_tokenizer`` of its tokenizer.json)
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def build_llama_style_tokenizer(words, texts=(), max_length: int = 512):
    """Word-level tokenizer over Llama 3 pre-tokens: ``words`` (with and without a leading space) and
    the pieces of ``texts``; ``<|begin_of_text|>`` prepended, right padding with ``<pad>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated")
    vocab: dict[str, int] = {"<pad>": 0, "<unk>": 1}
    for tok in LLAMA3_SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    specials = re.compile("|".join(re.escape(t) for t in LLAMA3_SPECIAL_TOKENS))
    for text in texts:
        for segment in specials.split(text):
            for piece, _ in split.pre_tokenize_str(segment):
                vocab.setdefault(piece, len(vocab))
    for word in words:
        vocab.setdefault(word, len(vocab))
        vocab.setdefault(" " + word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = split
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIAL_TOKENS])
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<|end_of_text|>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


@register_tiny("hunyuan_video")
def build_tiny_hunyuan_video(folder: str, seed: int = 0) -> str:
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer = build_llama_style_tokenizer(TINY_WORDS, texts=[DEFAULT_PROMPT_TEMPLATE["template"]], max_length=512)
    text_encoder = LlamaModel(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                    pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id)
    )
    tokenizer_2 = build_word_tokenizer(TINY_WORDS, max_length=77)
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(tokenizer_2), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                       num_attention_heads=2, max_position_embeddings=77, pad_token_id=tokenizer_2.pad_token_id,
                       eos_token_id=tokenizer_2.eos_token_id, bos_token_id=tokenizer_2.eos_token_id)
    )
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=4,
    )
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    pipe = HunyuanVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae, scheduler=scheduler,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
    )
    pipe.save_pretrained(folder)
    return folder
