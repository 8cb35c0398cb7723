"""Training the embedded toy model: a tiny text-to-video model with exactly Wan2.1's classes.

Stages (each resumable; run ``python -m motiontune.toyworld.training --help``):

1. ``vae``: an AutoencoderKLWan (2x spatial, 2x temporal compression, 8 latent channels)
   trained to reconstruct toy-world clips (all splits: the codec is generic), checkpointed.
2. ``bank``: the per-channel latent mean/std are measured and written into the VAE config
   (as Wan2.1 does), then a bank of clips of the BASE split is rendered and encoded — minus the
   held-in evaluation combinations, which never appear verbatim in training.
3. ``dit``: the WanTransformer3DModel is trained on the bank with motiontune's own trainer
   (the ``full`` recipe over the whole denoiser, flow matching, 10% empty captions for
   classifier-free guidance); checkpoints and resume are the trainer's.
   ``tune`` (when ``tune_steps`` > 0): the transformer goes on from the dit stage's final
   weights with its own warm-up and cosine schedule, a fraction of its noisy inputs made from the
   same clip with another shape (``tune_swap``), so that the caption has to decide the shape.
   Either stage can also train on short batches (the first latent frames of each clip,
   ``dit_short_fraction``) and on blurred or rounded inputs near the end of the noise range
   (``dit_blur``/``tune_blur``), and stop early with ``--until`` to go on later.
4. ``export``: the pipeline is saved in diffusers layout (safetensors) with
   ``motiontune_defaults.json`` and the split files, loadable as ``--backbone toy``.

Everything is seeded; on 2 CPU cores the default schedule takes about 3 h 45 min (2 h 45 min
without the tune stage) and the packaged model's chain about 5 hours; chains of under 3 hours
with swapped inputs and short batches in the dit stage are measured in docs/toyworld.md, "Cost";
the same command runs on a GPU with ``--device cuda``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from motiontune.data.dataset import DataSource, Sample, content_key
from motiontune.errors import ConfigError
from motiontune.toyworld.render import background_image, render, shape_contrast, video_to_tensor
from motiontune.toyworld.world import BACKGROUNDS, COLORS, SHAPES, VOCABULARY, caption, sample_scene
from motiontune.toyworld.motions import BASE_MOTIONS
from motiontune.utils.files import atomic_write_text, load_tensors, save_tensors

NUM_FRAMES, FRAME_SIZE, FPS = 17, 32, 8


@dataclass
class ToyModelConfig:
    seed: int = 0
    #: frames are frame_size x frame_size pixels (17 frames at 8 fps); the transformer's patch must
    #: divide frame_size / 2 (the VAE's 2x spatial compression)
    frame_size: int = FRAME_SIZE
    # architecture
    z_dim: int = 8
    vae_base_dim: int = 16
    text_dim: int = 64
    heads: int = 4
    head_dim: int = 32
    layers: int = 6
    ffn_dim: int = 512
    max_text_tokens: int = 16
    # VAE training
    vae_steps: int = 2500
    vae_batch: int = 8
    vae_frames: int = 9
    #: the last steps train on full-length clips (a causal Wan VAE trained only on shorter clips
    #: degrades on the later latent chunks), with this batch size
    vae_long_steps: int = 500
    vae_long_batch: int = 4
    #: channel multipliers of the VAE levels (n levels: 2**(n-1) x spatial compression)
    vae_dim_mult: str = "1,2"
    #: the transformer's (frames, height, width) patch over the latents (Wan2.1's own is 1,2,2). With
    #: 1,4,4 on the 16x16 latent grid a token covered 8x8 pixels, about the whole subject, and a
    #: base motion crossed 1.6 tokens: the model of that patch learnt colour and background but not
    #: shape or motion direction (docs/RESULTS.md); 1,2,2 gives 576 tokens per clip.
    patch_size: str = "1,2,2"
    vae_lr: float = 2e-3
    vae_kl: float = 1e-4
    #: extra weight of subject pixels in the reconstruction loss (the background fills ~95% of a frame)
    vae_fg_weight: float = 10.0
    # latent bank and held-in evaluation prompts
    bank_size: int = 12000
    heldin_prompts: int = 64
    # transformer training
    dit_steps: int = 4000
    dit_batch: int = 16
    dit_lr: float = 5e-4
    dit_warmup: int = 200
    #: training noise levels: logit-normal(0, 1) ("logit_normal") or "uniform", warped by dit_shift.
    #: Logit-normal(0, 1) draws a noise level above 0.8 only 8% of the time (above 0.95: 0.2%); a model
    #: trained so placed and moved the subject only when started from a partly noised real clip.
    #: Uniform with shift 2 (the sampler's flow_shift) puts a third of the draws above 0.8
    #: (docs/toyworld.md, "Training").
    dit_timesteps: str = "uniform"
    dit_shift: float = 2.0
    #: from this step on (0: never), noise levels are drawn as dit_late_timesteps warped by dit_late_shift
    dit_late_from: int = 0
    dit_late_timesteps: str = "uniform"
    dit_late_shift: float = 2.0
    caption_dropout: float = 0.1
    #: extra weight of the latent cells under the subject in the diffusion loss (0: plain loss); the
    #: subject covers about a tenth of the latent cells, so 3 gives it about a third of the loss
    dit_fg_weight: float = 3.0
    #: extra weight of the latent cells where the subject's shape shows (render.shape_contrast: the
    #: pixels where the other shapes of the same place and area differ, mapped onto the latent grid
    #: like the subject mask; 0: none). A model trained with the subject weight alone drew every
    #: shape as a round blob: its prediction barely depended on the shape word (docs/toyworld.md)
    dit_shape_weight: float = 0.0
    #: fraction of the captioned samples whose noisy input is made from the same clip with another
    #: shape (stored in the latent bank), the target staying the captioned clip, at noise levels
    #: within dit_swap_levels ("low,high", fractions of the 1000 timesteps). A model trained on its
    #: own clips alone keeps the shape it sees in its noisy input, and in generation sees a blob:
    #: with swapped inputs, only the caption tells the shape (0: off)
    dit_swap: float = 0.0
    dit_swap_levels: str = "0.3,1.0"
    #: a second transformer stage ("tune", 0 steps: none) that goes on from the dit stage's final
    #: weights with its own warm-up and cosine schedule, the dit stage's settings, and tune_swap as
    #: the fraction of swapped inputs (dit_swap_levels). 1,000 steps raised shape accuracy from 0.39
    #: to 0.53 and the shape word's influence threefold (docs/RESULTS.md, "swapped-shape inputs");
    #: the packaged model's tune stage went on to 5,400 steps with short batches and blurred inputs
    #: (shape 0.94; docs/RESULTS.md, "the packaged chain within 3 hours")
    tune_steps: int = 1000
    tune_lr: float = 3e-4
    tune_warmup: int = 50
    tune_swap: float = 0.5
    #: share of the transformer steps (the dit stage, and the tune stage unless tune_short_fraction
    #: is set) whose batch holds only the first
    #: dit_short_frames latent frames of each clip (0: none). The Wan VAE is causal, so a prefix of a
    #: clip's latents is the encoding of the clip's first frames: a short batch is a real, shorter
    #: clip (3 latent frames = 5 frames) at about a third of the tokens and cost of a full one
    dit_short_fraction: float = 0.0
    dit_short_frames: int = 3
    #: the tune stage's own share of short batches (None: dit_short_fraction, as for the dit stage)
    tune_short_fraction: float | None = None
    #: fraction of the captioned samples (dit stage: dit_blur, tune stage: tune_blur) whose noisy input
    #: is made, at noise levels within blur_levels, from the same clip blurred by a Gaussian of
    #: blur_sigma pixels (drawn per clip, "low,high"; stored in the bank), the target staying the sharp
    #: clip: the model learns to sharpen what it has drawn at the end of sampling, where an input that
    #: shows a rounded subject would otherwise be kept as it is
    dit_blur: float = 0.0
    tune_blur: float = 0.0
    blur_levels: str = "0.0,0.5"
    blur_sigma: str = "0.7,1.5"
    #: share of those clips whose blurred subject is cut back to crisp edges (rounded_render): rounded
    #: corners at full contrast, like the generated blobs, instead of soft edges
    blur_round: float = 0.0
    checkpoint_every: int = 200
    # sampling defaults written with the model
    sample_steps: int = 30
    guidance: float = 4.0
    flow_shift: float = 2.0
    #: learning rate of customizations on this model, written as its default_learning_rate: LoRA rank 4
    #: at the recipes' 1e-4 (set for models of a billion parameters) learnt nothing of a reference clip in
    #: 400 steps here; 1e-3 carries a held-out motion over to new subjects (docs/RESULTS.md, "Toy demo")
    customize_lr: float = 1e-3
    #: boundary of the ``timestep`` recipe on this model (native t; None leaves the family default). The
    #: probes of benchmarks/tau_ablation.py put the motion/appearance boundary at the top of their grid
    #: (1000); one grid step below it, 900 leaked less than all timesteps at a higher motion fidelity
    #: (docs/RESULTS.md, "Timestep ablation (toy)")
    timestep_tau: float | None = 900.0


# ---------------------------------------------------------------------------- components


def build_components(cfg: ToyModelConfig) -> dict:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from motiontune.testing.tokenizer import build_word_tokenizer

    torch.manual_seed(cfg.seed)
    tokenizer = build_word_tokenizer(VOCABULARY, max_length=cfg.max_text_tokens)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=cfg.text_dim, d_kv=16, d_ff=2 * cfg.text_dim, num_layers=2,
                   num_heads=4, relative_attention_num_buckets=16, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    )
    dim_mult = [int(m) for m in cfg.vae_dim_mult.split(",")]
    levels = len(dim_mult) - 1  # each level halves height and width; the last one also halves time
    vae = AutoencoderKLWan(
        base_dim=cfg.vae_base_dim, z_dim=cfg.z_dim, dim_mult=dim_mult, num_res_blocks=1,
        temperal_downsample=[False] * (levels - 1) + [True], scale_factor_spatial=2**levels, scale_factor_temporal=2,
        latents_mean=[0.0] * cfg.z_dim, latents_std=[1.0] * cfg.z_dim,
    )
    transformer = WanTransformer3DModel(
        patch_size=tuple(int(p) for p in cfg.patch_size.split(",")), num_attention_heads=cfg.heads, attention_head_dim=cfg.head_dim, in_channels=cfg.z_dim,
        out_channels=cfg.z_dim, text_dim=cfg.text_dim, freq_dim=64, ffn_dim=cfg.ffn_dim, num_layers=cfg.layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                        flow_shift=cfg.flow_shift)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "transformer": transformer, "scheduler": scheduler}


def heldin_combinations(cfg: ToyModelConfig) -> list[tuple[str, str, str, str]]:
    """(color, shape, motion, background) combinations held out of training for evaluation."""
    combos = list(itertools.product(COLORS, SHAPES, BASE_MOTIONS, BACKGROUNDS))
    rng = np.random.default_rng(cfg.seed + 424242)
    picked = rng.choice(len(combos), size=cfg.heldin_prompts, replace=False)
    return [combos[i] for i in sorted(picked)]


# ---------------------------------------------------------------------------- stage 1: VAE


def _subject_mask(scene, video: np.ndarray) -> torch.Tensor:
    """(F, H, W) float mask of the subject and 2 pixels around it in a rendered clip."""
    subject = np.abs(video.astype(np.float32) - background_image(scene.background, *video.shape[1:3])[None]).max(-1) > 6
    return torch.nn.functional.max_pool2d(torch.from_numpy(subject.astype(np.float32))[:, None], 5, 1, 2)[:, 0]


def latent_grid_mask(mask: torch.Tensor, temporal: int, spatial: int) -> torch.Tensor:
    """A pixel mask (F, H, W) on the latent grid (1, f, h, w) of a causal video VAE: latent frame 0
    covers frame 0 alone, latent frame k the ``temporal`` frames before it; a latent cell is set
    when any of its pixels is."""
    rest = mask[1:].reshape(-1, temporal, *mask.shape[1:]).amax(1)
    frames = torch.cat([mask[:1], rest])
    return torch.nn.functional.max_pool2d(frames[:, None], spatial)[:, 0][None]


def swapped_shape(scene, rng: np.random.Generator):
    """``scene`` with another shape (drawn from ``rng``) at the same centroid path and area."""
    others = [s for s in SHAPES if s != scene.shape]
    return replace(scene, shape=others[int(rng.integers(len(others)))])


def _render_batch(
    rng: np.random.Generator, n: int, frames: int, split: str = "all", exclude=None, masks: bool = False, contrast: bool = False,
    size: int = FRAME_SIZE, swap_rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, list[str]] | tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Clips of one split (and, with ``masks``, their (F, H, W) subject masks, with ``contrast``
    their shape-contrast maps and, with ``swap_rng``, the same clips with another shape; None without)."""
    clips, caps, subjects, contrasts, swaps = [], [], [], [], []
    while len(clips) < n:
        scene = sample_scene(rng, split)
        if exclude and (scene.color, scene.shape, scene.motion, scene.background) in exclude:
            continue
        video = render(scene, frames, size, size)
        clips.append(video_to_tensor(video))
        caps.append(caption(scene))
        if masks:
            subjects.append(_subject_mask(scene, video))
        if contrast:
            contrasts.append(torch.from_numpy(shape_contrast(scene, frames, size, size)))
        if swap_rng is not None:
            swaps.append(video_to_tensor(render(swapped_shape(scene, swap_rng), frames, size, size)))
    if masks:
        return (torch.stack(clips), caps, torch.stack(subjects), torch.stack(contrasts) if contrast else None,
                torch.stack(swaps) if swaps else None)
    return torch.stack(clips), caps


def _render_weighted_batch(rng: np.random.Generator, n: int, frames: int, fg_weight: float, size: int = FRAME_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of all splits and per-pixel loss weights (1 on the background, 1 + fg_weight on and around the subject)."""
    clips, weights = [], []
    for _ in range(n):
        scene = sample_scene(rng, "all")
        video = render(scene, frames, size, size)
        # the weight covers the subject and 2 pixels around it, so that its edges are sharp on both sides
        clips.append(video_to_tensor(video))
        weights.append((1.0 + fg_weight * _subject_mask(scene, video))[None])
    return torch.stack(clips), torch.stack(weights)


@torch.no_grad()
def vae_oracle_check(vae, n: int = 16, seed: int = 123, size: int = FRAME_SIZE) -> dict[str, float]:
    """Oracle accuracy of colour and shape on VAE reconstructions, and their PSNR."""
    from motiontune.toyworld.oracle import analyze
    from motiontune.toyworld.render import tensor_to_video

    rng = np.random.default_rng(seed)
    hits, psnrs = np.zeros(2), []
    for _ in range(n):
        scene = sample_scene(rng, "all")
        video = render(scene, NUM_FRAMES, size, size)
        rec = tensor_to_video(vae.decode(vae.encode(video_to_tensor(video)[None]).latent_dist.mode()).sample[0])
        a = analyze(rec)
        hits += [a.color == scene.color, a.shape == scene.shape]
        psnrs.append(10 * np.log10(255**2 / max(1e-6, float(((rec.astype(np.float64) - video) ** 2).mean()))))
    return {"color": float(hits[0] / n), "shape": float(hits[1] / n), "psnr": float(np.mean(psnrs))}


#: recompilations torch may make of the compiled VAE's encoder and decoder: their causal convolutions
#: keep frame caches whose shapes differ from chunk to chunk, each a new graph (12 in a run of the
#: default config), more than torch's default limit of 8 (past it torch falls back to eager)
VAE_RECOMPILE_LIMIT = 64
#: torch.compile backend of the VAE's training ("inductor": C++ kernels, minutes to compile on 2 cores)
VAE_COMPILE_BACKEND = "inductor"


def train_vae(cfg: ToyModelConfig, work: str, device: str = "cpu", progress: bool = True, compile: bool = False):
    """Stage 1: the VAE, checkpointed every 100 steps and resumable; with ``compile``, its encoder and
    decoder are compiled in place (``torch.compile``) for training, and the oracle checks run eager."""
    from diffusers import AutoencoderKLWan

    final = os.path.join(work, "vae")
    if os.path.isfile(os.path.join(final, "config.json")):
        return AutoencoderKLWan.from_pretrained(final).to(device)
    vae = build_components(cfg)["vae"].to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    ckpt = os.path.join(work, "vae-train.safetensors")
    start = 0
    if os.path.isfile(ckpt):
        state = load_tensors(ckpt)
        vae.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        from motiontune.training.checkpoint import optimizer_from_tensors

        with open(ckpt + ".json", encoding="utf-8") as fh:
            meta = json.load(fh)
        optimizer_from_tensors(opt, {k[4:]: v for k, v in state.items() if k.startswith("opt.")}, meta["optimizer"])
        start = meta["step"]
        seconds_before = float(meta.get("seconds", 0.0))
    else:
        seconds_before = 0.0
    bar = tqdm(total=cfg.vae_steps, initial=start, desc="toy VAE", disable=not progress, dynamic_ncols=True)
    raw: list[torch.Tensor] = []
    hook = vae.decoder.register_forward_hook(lambda module, args, out: raw.append(out))
    if compile:
        vae.encoder.compile(backend=VAE_COMPILE_BACKEND)
        vae.decoder.compile(backend=VAE_COMPILE_BACKEND)
    began = time.time()
    vae.train()
    with torch._dynamo.config.patch(recompile_limit=VAE_RECOMPILE_LIMIT) if compile else contextlib.nullcontext():
        for step in range(start, cfg.vae_steps):
            rng = np.random.default_rng([cfg.seed, 1, step])
            long = step >= cfg.vae_steps - cfg.vae_long_steps
            x, w = _render_weighted_batch(rng, cfg.vae_long_batch if long else cfg.vae_batch,
                                          NUM_FRAMES if long else cfg.vae_frames, cfg.vae_fg_weight, cfg.frame_size)
            x, w = x.to(device), w.to(device)
            dist = vae.encode(x).latent_dist
            z = dist.sample(torch.Generator(device).manual_seed(step))
            raw.clear()
            vae.decode(z)
            # the loss reads the decoder's output before AutoencoderKLWan clamps it to [-1, 1]: the clamp has no
            # gradient where the output overshoots, which stalls learning of saturated subject colours
            y = torch.cat(raw, dim=2)
            rec = ((y - x).abs() * w).mean() + (((y - x) ** 2) * w).mean()
            kl = dist.kl().mean() / z[0].numel()
            loss = rec + cfg.vae_kl * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            for g in opt.param_groups:
                g["lr"] = cfg.vae_lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / cfg.vae_steps)))
            opt.step()
            bar.update(1)
            bar.set_postfix(rec=f"{rec.item():.4f}", kl=f"{kl.item():.3g}")
            if (step + 1) % 100 == 0 or step + 1 == cfg.vae_steps:
                _save_vae_state(vae, opt, step + 1, ckpt, seconds_before + time.time() - began)
            if (step + 1) % 500 == 0 or step + 1 == cfg.vae_steps:
                vae.eval()
                # eager: the check's clips of all frames would compile more graphs for a few calls
                with torch.compiler.set_stance("force_eager") if compile else contextlib.nullcontext():
                    check = vae_oracle_check(vae, size=cfg.frame_size)
                bar.write(f"toy VAE step {step + 1}: oracle on reconstructions {check}")
                vae.train()
    hook.remove()
    bar.close()
    vae.eval()
    vae.save_pretrained(final)
    # compiled: the VAE as saved, without the training's compiled graphs and hook
    return AutoencoderKLWan.from_pretrained(final).to(device) if compile else vae


def _save_vae_state(vae, opt, step: int, path: str, seconds: float = 0.0) -> None:
    from motiontune.training.checkpoint import optimizer_to_tensors

    tensors, meta = optimizer_to_tensors(opt)
    state = {f"model.{k}": v for k, v in vae.state_dict().items()}
    state.update({f"opt.{k}": v for k, v in tensors.items()})
    save_tensors(state, path)
    # "seconds": wall time of the steps so far, over every run that resumed them
    atomic_write_text(path + ".json", json.dumps({"step": step, "optimizer": meta, "seconds": round(seconds, 1)}))


# ---------------------------------------------------------------------------- stage 2: bank


#: clips per VAE encode call while building the bank: a fixed chunk (the last one padded) so that a
#: compiled encoder sees one shape only; 16 is also a little faster per clip than 64 in eager mode
ENCODE_CHUNK = 16


@torch.no_grad()
def encode_clips(vae, clips: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The VAE's latent modes of ``clips`` (N, 3, F, H, W) on the CPU, encoded ENCODE_CHUNK at a time."""
    out = []
    for start in range(0, len(clips), ENCODE_CHUNK):
        chunk = clips[start:start + ENCODE_CHUNK]
        n = len(chunk)
        if n < ENCODE_CHUNK:  # padded, so that a compiled encoder is not compiled again for the last chunk
            chunk = torch.cat([chunk, chunk.new_zeros(ENCODE_CHUNK - n, *chunk.shape[1:])])
        out.append(vae.encode(chunk.to(device)).latent_dist.mode().cpu()[:n])
    return torch.cat(out)


@torch.no_grad()
def build_bank(cfg: ToyModelConfig, work: str, vae, device: str = "cpu", progress: bool = True,
               compile: bool = False) -> str:
    """Latent statistics into the VAE config, then the encoded training bank; with ``compile``, the
    VAE's encoder is compiled in place first (``torch.compile``: about twice as fast on 2 CPU cores
    once compiled, about a minute to compile; the latents agree with eager ones to about 1e-5)."""
    path = os.path.join(work, "bank.safetensors")
    if os.path.isfile(path):
        if uses_blur(cfg):
            add_blurred(cfg, work, vae, device, progress, compile=compile)
        return path
    if compile:
        vae.encoder.compile()
    exclude = set(heldin_combinations(cfg))
    rng = np.random.default_rng([cfg.seed, 2])
    # latent statistics from 256 clips of all splits, written into the VAE config as Wan does
    x, _ = _render_batch(rng, 256, NUM_FRAMES, size=cfg.frame_size)
    zs = encode_clips(vae, x, device)
    mean = zs.mean(dim=(0, 2, 3, 4))
    std = zs.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    vae.save_pretrained(os.path.join(work, "vae"))
    latents, captions, subjects, shapes, swapped = [], [], [], [], []
    # the swapped shapes come from a stream of their own, so the bank's clips do not depend on them
    swap_rng = np.random.default_rng([cfg.seed, 3]) if uses_swap(cfg) else None
    temporal, spatial = int(vae.config.scale_factor_temporal), int(vae.config.scale_factor_spatial)
    bar = tqdm(total=cfg.bank_size, desc="toy latent bank", disable=not progress, dynamic_ncols=True)
    while len(captions) < cfg.bank_size:
        # the shape maps (rendering every clip with the three other shapes) double the bank's time: only when used
        x, caps, masks, contrasts, swaps = _render_batch(
            rng, min(64, cfg.bank_size - len(captions)), NUM_FRAMES, split="base", exclude=exclude, masks=True,
            contrast=cfg.dit_shape_weight > 0, size=cfg.frame_size, swap_rng=swap_rng)
        for clips, out in ((x, latents), (swaps, swapped)):
            if clips is not None:
                z = encode_clips(vae, clips, device)
                out.append(((z - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)).half())
        subjects.append(torch.stack([latent_grid_mask(m, temporal, spatial) for m in masks]).to(torch.uint8))
        if contrasts is not None:
            shapes.append(torch.stack([(latent_grid_mask(c, temporal, spatial) * 255).round() for c in contrasts]).to(torch.uint8))
        captions += caps
        bar.update(len(caps))
    bar.close()
    atomic_write_text(os.path.join(work, "bank.json"), json.dumps({"captions": captions}))
    # "subject": where the subject is on the latent grid, for the subject-weighted loss (dit_fg_weight);
    # "shape": where its shape shows (0..255), for the shape-weighted loss (dit_shape_weight > 0 only);
    # "swapped": the same clips with another shape, for swapped inputs (dit_swap > 0 only)
    tensors = {"latents": torch.cat(latents), "subject": torch.cat(subjects)}
    if shapes:
        tensors["shape"] = torch.cat(shapes)
    if swapped:
        tensors["swapped"] = torch.cat(swapped)
    save_tensors(tensors, path)
    if uses_blur(cfg):
        add_blurred(cfg, work, vae, device, progress)  # the encoder is compiled already
    return path


def bank_scenes(cfg: ToyModelConfig) -> list:
    """The scenes of the latent bank, in its order: the draws of build_bank replayed (the 256 clips of
    the latent statistics, then the base-split clips outside the held-in combinations)."""
    exclude = set(heldin_combinations(cfg))
    rng = np.random.default_rng([cfg.seed, 2])
    for _ in range(256):
        sample_scene(rng, "all")
    scenes = []
    while len(scenes) < cfg.bank_size:
        scene = sample_scene(rng, "base")
        if (scene.color, scene.shape, scene.motion, scene.background) not in exclude:
            scenes.append(scene)
    return scenes


def rounded_render(scene, sigma: float, num_frames: int = NUM_FRAMES, size: int = FRAME_SIZE) -> np.ndarray:
    """``scene`` with its subject's coverage blurred by a Gaussian of ``sigma`` pixels, then cut back
    to edges about a pixel wide around its half level: the shape with rounded corners (uint8 frames)."""
    import cv2

    from motiontune.toyworld.render import composite, ground_truth, shape_coverage

    truth = ground_truth(scene, num_frames, size, size)
    coverage = shape_coverage(scene.shape, truth.centers * size, truth.widths * size, size, size)
    gain = np.sqrt(2.0 * np.pi) * sigma  # the blurred edge's slope at its half level is 1 / gain per pixel
    return composite(scene, np.stack([np.clip(0.5 + (cv2.GaussianBlur(c, (0, 0), sigma) - 0.5) * gain, 0.0, 1.0) for c in coverage]))


@torch.no_grad()
def add_blurred(cfg: ToyModelConfig, work: str, vae, device: str = "cpu", progress: bool = True,
                compile: bool = False) -> None:
    """Add to the bank, unless it holds them for the same settings, its clips blurred by a Gaussian of
    ``blur_sigma`` pixels (one sigma per clip, from an RNG stream of its own), ``blur_round`` of them
    cut back to crisp edges (:func:`rounded_render`), encoded like the clips ("blurred")."""
    from motiontune.toyworld.oracle import corrupt

    path = os.path.join(work, "bank.safetensors")
    with open(os.path.join(work, "bank.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    # bank.json names the blur settings only once the blurred clips are saved
    settings = {"blur_sigma": cfg.blur_sigma, "blur_round": cfg.blur_round}
    if meta.get("blurred") == settings:
        return
    if compile:
        vae.encoder.compile()
    scenes = bank_scenes(cfg)
    if [caption(s) for s in scenes] != meta["captions"]:
        raise ConfigError(f"{work}/bank.json does not hold the clips these settings draw (another seed, bank_size or "
                          "held-in list?); delete bank.safetensors to rebuild the bank")
    low, high = _pair(cfg, "blur_sigma", top=None)
    rng = np.random.default_rng([cfg.seed, 4])
    sigmas = rng.uniform(low, high, len(scenes))
    rounded = rng.random(len(scenes)) < cfg.blur_round

    def degraded(scene, sigma: float, rounded_: bool) -> np.ndarray:
        if rounded_:
            return rounded_render(scene, sigma, NUM_FRAMES, cfg.frame_size)
        return corrupt(render(scene, NUM_FRAMES, cfg.frame_size, cfg.frame_size), blur=sigma)

    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    blurred = []
    bar = tqdm(total=len(scenes), desc="toy latent bank (blurred)", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(scenes), 64):
        clips = torch.stack([video_to_tensor(degraded(s, float(sigma), bool(r)))
                             for s, sigma, r in zip(scenes[start:start + 64], sigmas[start:start + 64], rounded[start:start + 64])])
        z = encode_clips(vae, clips, device)
        blurred.append(((z - mean) / std).half())
        bar.update(len(clips))
    bar.close()
    tensors = load_tensors(path)
    tensors["blurred"] = torch.cat(blurred)
    save_tensors(tensors, path)
    atomic_write_text(os.path.join(work, "bank.json"), json.dumps({**meta, "blurred": settings}))


class LatentBank(DataSource):
    """Training source over the encoded bank; a fraction of captions is dropped for CFG."""

    cacheable = False

    def __init__(self, work: str, caption_dropout: float, fg_weight: float = 0.0, shape_weight: float = 0.0,
                 swap: float = 0.0, swap_levels: tuple[float, float] = (0.0, 1.0), swap_name: str = "dit_swap",
                 short_fraction: float = 0.0, short_frames: int = 3, blur: float = 0.0,
                 blur_levels: tuple[float, float] = (0.0, 0.5), blur_name: str = "dit_blur",
                 short_name: str = "dit_short_fraction"):
        tensors = load_tensors(os.path.join(work, "bank.safetensors"))
        self.latents = tensors["latents"]
        with open(os.path.join(work, "bank.json"), encoding="utf-8") as fh:
            self.captions = json.load(fh)["captions"]
        self.caption_dropout = caption_dropout
        self.fg_weight = fg_weight
        self.shape_weight = shape_weight
        self.subject = tensors.get("subject")
        self.shape = tensors.get("shape")
        self.swapped = tensors.get("swapped")
        self.blurred = tensors.get("blurred")
        self.blur, self.blur_levels = blur, tuple(blur_levels)
        self.swap, self.swap_levels = swap, tuple(swap_levels)
        self.short_fraction, self.short_frames = short_fraction, short_frames
        check_input_shares(swap, blur, short_fraction, short_frames, self.latents.shape[2], swap_name, blur_name,
                           short_name)
        for name, value, maps, what in (("dit_fg_weight", fg_weight, self.subject, "subject masks"),
                                        ("dit_shape_weight", shape_weight, self.shape, "shape-contrast maps"),
                                        (swap_name, swap, self.swapped, "shape-swapped latents"),
                                        (blur_name, blur, self.blurred, "blurred latents")):
            if value > 0 and maps is None:
                raise ConfigError(f"{name}={value} needs {what} in the latent bank; {work}/bank.safetensors has none (delete it to rebuild)")

    def fingerprint(self) -> str:
        """The bank in a run's fingerprint: its captions, the latents' shape and this source's settings
        (not the latents' values, which a bank rebuilt on another machine may change in the last bits)."""
        return content_key("latent-bank", self.captions, list(self.latents.shape), self.caption_dropout, self.fg_weight,
                           self.shape_weight, self.swap, list(self.swap_levels), self.short_fraction, self.short_frames,
                           self.blur, list(self.blur_levels))

    def _weight(self, i: int) -> torch.Tensor | None:
        if self.fg_weight <= 0 and self.shape_weight <= 0:
            return None
        weight = torch.ones(self.latents[i][:1].shape)
        if self.fg_weight > 0:
            weight += self.fg_weight * self.subject[i].float()
        if self.shape_weight > 0:
            weight += self.shape_weight * self.shape[i].float() / 255.0
        return weight

    def draw(self, kind: str, generator: torch.Generator, n: int) -> list[Sample]:
        idx = torch.randint(len(self.captions), (n,), generator=generator)
        drop = torch.rand(n, generator=generator) < self.caption_dropout
        # without a caption nothing tells the shape: swapped inputs only for captioned samples
        # (no draw without swapped or blurred inputs, so that such runs keep their random stream)
        which = torch.rand(n, generator=generator) if self.swap > 0 or self.blur > 0 else torch.ones(n)
        swap = (which < self.swap) & ~drop
        blur = (which >= self.swap) & (which < self.swap + self.blur) & ~drop
        # one length per batch: the first latent frames of every clip (the causal VAE's encoding of a shorter clip)
        frames = self.short_frames if self.short_fraction > 0 and float(torch.rand(1, generator=generator)) < self.short_fraction else None

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return t if t is None or frames is None else t[:, :frames]

        return [
            BankSample(None, "" if d else self.captions[int(i)], "video", "bank", latents=cut(self.latents[int(i)]), loss_weight=cut(self._weight(int(i))),
                       input_latents=cut(self.swapped[int(i)]) if w else cut(self.blurred[int(i)]) if b else None,
                       input_levels=self.blur_levels if b else self.swap_levels)
            for i, d, w, b in zip(idx, drop, swap, blur)
        ]

    @staticmethod
    def training_input(samples: list[Sample], x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The trainer's hook for a source's own noisy inputs (see :class:`BankSample`): samples with
        input latents, at levels within their band, get a noisy input made from those latents and
        the target whose x0 estimate is the sample's own latents. None: the trainer's own input."""
        if not any(getattr(s, "input_latents", None) is not None for s in samples):
            return None
        x_t = schedule.add_noise(x0, noise, t)
        target = schedule.target(x0, noise, t)
        x_in = torch.stack([(s.latents if s.input_latents is None else s.input_latents).float() for s in samples]).to(x0.device)
        levels = torch.tensor([s.input_levels if s.input_latents is not None else (2.0, 2.0) for s in samples], dtype=torch.float32)
        low, high = levels[:, 0], levels[:, 1]
        level = t.float().cpu() / schedule.num_train_timesteps
        use = ((level >= low) & (level <= high) & (level > 0)).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        if bool(use.any()):
            x_alt = schedule.add_noise(x_in, noise, t)
            x_t = torch.where(use, x_alt, x_t)
            target = torch.where(use, schedule.target_for(x_alt, x0, t.clamp_min(1e-6) if t.is_floating_point() else t), target)
        return x_t, target


@dataclass
class BankSample(Sample):
    """A bank clip that may bring its own noisy-input latents: ``input_latents`` (C, f, h, w) (a clip
    of another shape, or the same clip blurred) are what the noisy training input is made from at
    noise levels (fractions of the schedule's timesteps) within ``input_levels``; the model is
    still trained to produce ``latents``, so the caption, not the noisy input, has to decide them."""

    input_latents: torch.Tensor | None = None
    input_levels: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_latents is not None:
            if self.latents is None or self.input_latents.shape != self.latents.shape:
                raise ConfigError(f"{self.source}: input_latents need latents of the same shape")
            lo, hi = self.input_levels
            if not 0.0 <= lo <= hi <= 1.0:
                raise ConfigError(f"{self.source}: input_levels must satisfy 0 <= low <= high <= 1, got {self.input_levels}")


# ---------------------------------------------------------------------------- stage 3: DiT


def assemble_pipeline(cfg: ToyModelConfig, work: str, vae) -> str:
    from diffusers import WanPipeline

    folder = os.path.join(work, "pipeline")
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return folder
    comps = build_components(cfg)
    comps["vae"] = vae
    WanPipeline(**comps).save_pretrained(folder)
    write_defaults(cfg, folder)
    return folder


def write_defaults(cfg: ToyModelConfig, folder: str) -> None:
    atomic_write_text(os.path.join(folder, "motiontune_defaults.json"), json.dumps({
        "num_frames": NUM_FRAMES, "height": cfg.frame_size, "width": cfg.frame_size, "default_steps": cfg.sample_steps,
        "default_guidance": cfg.guidance, "default_fps": FPS, "default_learning_rate": cfg.customize_lr,
        **({"timestep_tau": cfg.timestep_tau, "timestep_tau_unit": "native"} if cfg.timestep_tau is not None else {}),
    }, indent=1))
    atomic_write_text(os.path.join(folder, "toyworld.json"), json.dumps({
        "heldin_combinations": [list(c) for c in heldin_combinations(cfg)],
        "training_config": asdict(cfg),
    }, indent=1))
    from motiontune.toyworld.model_card import write_model_card

    write_model_card(folder)  # README.md: how to run the folder in diffusers' own pipeline


def uses_swap(cfg: ToyModelConfig) -> bool:
    """Whether a transformer stage trains on shape-swapped inputs (the bank then stores them)."""
    return cfg.dit_swap > 0 or (cfg.tune_steps > 0 and cfg.tune_swap > 0)


def uses_blur(cfg: ToyModelConfig) -> bool:
    """Whether a transformer stage trains on blurred inputs (the bank then stores them)."""
    return cfg.dit_blur > 0 or (cfg.tune_steps > 0 and cfg.tune_blur > 0)


def train_dit(cfg: ToyModelConfig, work: str, pipeline: str, device: str = "cpu", progress: bool = True, stage: str = "dit",
              until: int | None = None, compile: bool = False):
    """Train the transformer stage ``dit`` (from the pipeline's initial weights) or ``tune`` (from the
    dit stage's final weights, saved as WORK/pipeline-tune) into WORK/<stage>; with ``until``, stop
    after that step (checkpointed; the stage's schedule stays that of all its steps); with ``compile``,
    the transformer is compiled (``TrainConfig.compile``). Returns the trainer's result."""
    from motiontune.backbones import load_backbone
    from motiontune.recipes import make_recipe
    from motiontune.training.trainer import Trainer, TrainConfig

    if stage == "tune":
        pipeline = tune_pipeline(cfg, work, pipeline, device)
        steps, lr, warmup, swap, blur = cfg.tune_steps, cfg.tune_lr, cfg.tune_warmup, cfg.tune_swap, cfg.tune_blur
    else:
        steps, lr, warmup, swap, blur = cfg.dit_steps, cfg.dit_lr, cfg.dit_warmup, cfg.dit_swap, cfg.dit_blur
    spec = load_backbone(pipeline, family="wan", device=device)
    recipe = make_recipe("full", attention=("all",), learning_rate=lr)
    phases = [{"from_step": cfg.dit_late_from, "distribution": cfg.dit_late_timesteps, "shift": cfg.dit_late_shift}] \
        if cfg.dit_late_from > 0 and stage == "dit" else []
    tc = TrainConfig(
        output_dir=os.path.join(work, stage), steps=steps, batch_size=cfg.dit_batch, seed=cfg.seed,
        timestep_distribution=cfg.dit_timesteps, train_shift=cfg.dit_shift, timestep_phases=phases,
        warmup_steps=warmup, lr_schedule="cosine", checkpoint_every=cfg.checkpoint_every,
        keep_checkpoints=2, progress=progress, max_grad_norm=1.0, stop_at=None if until is None else min(until, steps),
        compile=compile,
    )
    bank = LatentBank(work, cfg.caption_dropout, cfg.dit_fg_weight, cfg.dit_shape_weight, swap, swap_levels(cfg),
                      swap_name="tune_swap" if stage == "tune" else "dit_swap",
                      short_fraction=stage_short_fraction(cfg, stage), short_frames=cfg.dit_short_frames,
                      short_name=short_setting(cfg, stage),
                      blur=blur, blur_levels=_pair(cfg, "blur_levels"), blur_name="tune_blur" if stage == "tune" else "dit_blur")
    return Trainer(spec, recipe, bank, tc, {"size": [NUM_FRAMES, cfg.frame_size, cfg.frame_size]}).train()


def tune_pipeline(cfg: ToyModelConfig, work: str, pipeline: str, device: str = "cpu") -> str:
    """WORK/pipeline-tune: the assembled pipeline with the dit stage's final transformer."""
    from motiontune.backbones import load_backbone
    from motiontune.recipes import load_recipe

    folder = os.path.join(work, "pipeline-tune")
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return folder
    final = os.path.join(work, "dit", "motiontune.json")  # written when the stage finishes
    if not os.path.isfile(final):
        raise ConfigError(f"the tune stage starts from the finished dit stage; {final} is missing")
    spec = load_backbone(pipeline, family="wan", device=device)
    load_recipe(os.path.join(work, "dit"), spec)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    spec.pipe.save_pretrained(tmp, safe_serialization=True)
    write_defaults(cfg, tmp)
    os.replace(tmp, folder)
    return folder


def _pair(cfg: ToyModelConfig, name: str, top: float | None = 1.0) -> tuple[float, float]:
    """A "low,high" setting as floats with 0 <= low <= high (<= top)."""
    text = getattr(cfg, name)
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected LOW,HIGH") from None
    if not 0.0 <= low <= high or (top is not None and high > top):
        raise ConfigError(f"{name}={text!r}: expected 0 <= LOW <= HIGH" + (f" <= {top:g}" if top is not None else ""))
    return low, high


def swap_levels(cfg: ToyModelConfig) -> tuple[float, float]:
    return _pair(cfg, "dit_swap_levels")


def load_dit_checkpoint(spec, checkpoint: str) -> None:
    """Load the transformer weights of a ``dit`` stage checkpoint (``WORK/dit/checkpoints/step-N``, the
    trainer's ``adapter.safetensors`` of the ``full`` recipe) into a loaded toy-model ``spec``."""
    from motiontune.recipes import make_recipe
    from motiontune.utils.files import load_tensors

    recipe = make_recipe("full", attention=("all",))
    recipe.apply(spec)
    try:
        recipe.load_state_dict(load_tensors(os.path.join(checkpoint, "adapter.safetensors")))
    except (ConfigError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"{checkpoint}: not a transformer checkpoint of this model ({str(exc).splitlines()[0]})") from None
    spec.denoiser.eval()


# ---------------------------------------------------------------------------- stage 4: export


def export(cfg: ToyModelConfig, work: str, target: str) -> str:
    from motiontune.backbones import load_backbone
    from motiontune.recipes import load_recipe

    # the last transformer stage: its weights over the pipeline it started from
    pipeline, stage = ("pipeline-tune", "tune") if cfg.tune_steps > 0 else ("pipeline", "dit")
    spec = load_backbone(os.path.join(work, pipeline), family="wan")
    load_recipe(os.path.join(work, stage), spec)
    tmp = target.rstrip("/") + ".tmp-export"
    shutil.rmtree(tmp, ignore_errors=True)
    spec.pipe.save_pretrained(tmp, safe_serialization=True)
    write_defaults(cfg, tmp)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


#: (pipeline-tune is left out: it is rebuilt from the dit stage's last checkpoint)
SNAPSHOT_ITEMS = ("config.json", "timings.json", "vae", "vae-train.safetensors", "vae-train.safetensors.json", "pipeline")
TIMINGS = "timings.json"


def record_time(work: str, stage: str, seconds: float, add: bool = False) -> dict[str, float]:
    """Write ``stage``'s wall time into the work folder's ``timings.json`` (``add``: on top of what it
    holds) and return the whole ledger. The VAE and transformer stages pass the time their
    checkpoints recorded over every run that resumed them; the bank adds the time of each addition
    to it (a bank built from nothing starts its entry anew)."""
    path = os.path.join(work, TIMINGS)
    ledger: dict[str, float] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            ledger = {k: float(v) for k, v in json.load(fh).items()}
    ledger[stage] = round(seconds + (ledger.get(stage, 0.0) if add else 0.0), 1)
    atomic_write_text(path, json.dumps(ledger, indent=1))
    return ledger


def vae_seconds(work: str) -> float | None:
    """The VAE stage's wall time from its training state, None when the work folder has none."""
    meta = os.path.join(work, "vae-train.safetensors.json")
    if not os.path.isfile(meta):
        return None
    with open(meta, encoding="utf-8") as fh:
        return json.load(fh).get("seconds")


def format_timings(ledger: dict[str, float]) -> str:
    parts = [f"{k} {v / 60:.1f} min" for k, v in ledger.items()]
    return f"wall time by stage, over all runs of this work folder: {', '.join(parts)}; total {sum(ledger.values()) / 60:.1f} min"


def snapshot(work: str, target: str) -> str:
    """Copy what a later run needs to resume (all but the latent bank, which is rebuilt
    deterministically from the VAE) into ``target``: the VAE, the assembled pipeline and the
    latest checkpoint of each transformer stage (a finished stage's last checkpoint is its final weights)."""
    from motiontune.training.checkpoint import latest_checkpoint

    tmp = target.rstrip("/") + ".tmp-snapshot"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for item in SNAPSHOT_ITEMS:
        src = os.path.join(work, item)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(tmp, item))
        elif os.path.isfile(src):
            shutil.copy2(src, os.path.join(tmp, item))
    for stage in ("dit", "tune"):
        ckpt = latest_checkpoint(os.path.join(work, stage))
        if ckpt:
            shutil.copytree(ckpt, os.path.join(tmp, stage, "checkpoints", os.path.basename(ckpt)))
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def restore(source: str, work: str) -> None:
    """Seed an empty work folder from a snapshot (nothing is overwritten)."""
    for root, _, files in os.walk(source):
        for name in files:
            src = os.path.join(root, name)
            dst = os.path.join(work, os.path.relpath(src, source))
            if not os.path.exists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)


def check_input_shares(swap: float, blur: float, short_fraction: float, short_frames: int, latent_frames: int,
                       swap_name: str = "dit_swap", blur_name: str = "dit_blur",
                       short_name: str = "dit_short_fraction") -> None:
    """Refuse a swapped or blurred share outside [0, 1] (together at most 1) or short batches that are
    not shorter than a clip of ``latent_frames`` (ConfigError)."""
    if not 0.0 <= swap <= 1.0:
        raise ConfigError(f"{swap_name}={swap}: must be a fraction in [0, 1]")
    if not 0.0 <= blur <= 1.0 - swap:
        raise ConfigError(f"{blur_name}={blur}: must be a fraction in [0, 1 - {swap_name}] ({swap_name}={swap})")
    if not 0.0 <= short_fraction <= 1.0:
        raise ConfigError(f"{short_name}={short_fraction}: must be a fraction in [0, 1]")
    if short_fraction > 0 and not 1 <= short_frames < latent_frames:
        raise ConfigError(f"dit_short_frames={short_frames}: must be from 1 to {latent_frames - 1} "
                          f"(a clip has {latent_frames} latent frames)")


def short_setting(cfg: ToyModelConfig, stage: str) -> str:
    """The name of the setting that gives transformer stage ``stage`` ("dit" or "tune") its share of
    short batches."""
    return "tune_short_fraction" if stage == "tune" and cfg.tune_short_fraction is not None else "dit_short_fraction"


def stage_short_fraction(cfg: ToyModelConfig, stage: str) -> float:
    """The share of short batches of transformer stage ``stage``."""
    return getattr(cfg, short_setting(cfg, stage))


def check_config(cfg: ToyModelConfig) -> None:
    """Refuse a frame size the VAE and the transformer's patch cannot tile, and bad swap or short-batch settings (ConfigError)."""
    swap_levels(cfg)
    _pair(cfg, "blur_levels")
    _pair(cfg, "blur_sigma", top=None)
    if not 0.0 <= cfg.blur_round <= 1.0:
        raise ConfigError(f"blur_round={cfg.blur_round}: must be a fraction in [0, 1]")
    latent_frames = (NUM_FRAMES - 1) // 2 + 1  # the VAE's causal 2x temporal compression
    for stage in ("dit", "tune"):
        check_input_shares(getattr(cfg, f"{stage}_swap"), getattr(cfg, f"{stage}_blur"), stage_short_fraction(cfg, stage),
                           cfg.dit_short_frames, latent_frames, f"{stage}_swap", f"{stage}_blur", short_setting(cfg, stage))
    if cfg.tune_steps < 0:
        raise ConfigError(f"tune_steps={cfg.tune_steps}: must be 0 (no tune stage) or more")
    levels = len(cfg.vae_dim_mult.split(",")) - 1
    latent = cfg.frame_size / 2**levels
    patch = [int(p) for p in cfg.patch_size.split(",")]
    if cfg.frame_size < 8 or latent != int(latent) or int(latent) % patch[1] or int(latent) % patch[2]:
        raise ConfigError(f"frame_size={cfg.frame_size}: its latent grid ({latent:g} cells across after the VAE's "
                          f"{2**levels}x compression) must be whole and divisible by the patch {cfg.patch_size}")


def config_from_settings(items: list[str]) -> ToyModelConfig:
    """The default :class:`ToyModelConfig` with ``KEY=VALUE`` overrides (``none`` for None), each
    converted to the type of the field's default."""
    cfg = ToyModelConfig()
    for item in items:
        key, _, value = item.partition("=")
        if not hasattr(cfg, key) or not value:
            raise ConfigError(f"--set {item}: expected KEY=VALUE with KEY a ToyModelConfig field")
        current = getattr(cfg, key)
        try:
            setattr(cfg, key, None if value == "none" else (float if current is None else type(current))(value))
        except ValueError:
            raise ConfigError(f"--set {item}: {value!r} is not a valid {type(current).__name__}") from None
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the embedded toy model (resumable).")
    parser.add_argument("--work-dir", default=os.path.expanduser("~/.cache/motiontune/toy-train"))
    parser.add_argument("--export", default=None, help="folder to write the finished model to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage", choices=["all", "vae", "bank", "dit", "tune", "export"], default="all")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a ToyModelConfig field")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume-from", default=None, help="snapshot folder to seed the work folder from")
    parser.add_argument("--snapshot", default=None, help="copy the resumable state to this folder and exit")
    parser.add_argument("--until", type=int, default=None, metavar="STEP",
                        help="with --stage dit or tune: stop that stage after this step (resumable; its schedule is unchanged)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the VAE's encoder and decoder for its training, its encoder for the bank "
                             "and the transformer for its stages "
                             "(needs a C++ compiler on CPU)")
    args = parser.parse_args(argv)
    if args.snapshot:
        print(f"snapshot written to {snapshot(args.work_dir, args.snapshot)}")
        return 0
    if args.resume_from:
        os.makedirs(args.work_dir, exist_ok=True)
        restore(args.resume_from, args.work_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.until is not None and (args.stage not in ("dit", "tune") or args.until < 1):
            raise ConfigError(f"--until {args.until}: needs --stage dit or tune and a step of 1 or more")
        cfg = config_from_settings(args.set)
        check_config(cfg)
    except ConfigError as exc:
        parser.error(str(exc))
    os.makedirs(args.work_dir, exist_ok=True)
    saved = os.path.join(args.work_dir, "config.json")
    if os.path.isfile(saved):
        with open(saved, encoding="utf-8") as fh:
            prev = json.load(fh)
        if prev != asdict(cfg):
            changed = sorted(k for k in prev if prev[k] != asdict(cfg).get(k))
            print(f"note: settings differ from the saved run in {changed}; later stages use the new values")
    atomic_write_text(saved, json.dumps(asdict(cfg), indent=1))
    began = time.time()
    try:
        vae = train_vae(cfg, args.work_dir, args.device, compile=args.compile)
        seconds = vae_seconds(args.work_dir)
        if seconds is not None:
            record_time(args.work_dir, "vae", seconds)
        if args.stage == "vae":
            return 0
        clock = time.time()
        # a bank built from nothing replaces the bank time a copied or earlier work folder recorded;
        # later additions to it (the blurred clips) add theirs
        fresh = not os.path.isfile(os.path.join(args.work_dir, "bank.safetensors"))
        build_bank(cfg, args.work_dir, vae, args.device, compile=args.compile)
        ledger = record_time(args.work_dir, "bank", time.time() - clock, add=not fresh)
        if args.stage == "bank":
            return 0
        pipeline = assemble_pipeline(cfg, args.work_dir, vae)
        stages = [("dit", cfg.dit_steps)] if args.stage in ("all", "dit", "tune") else []
        if cfg.tune_steps > 0 and args.stage in ("all", "tune"):
            stages.append(("tune", cfg.tune_steps))
        for stage, steps in stages:
            result = train_dit(cfg, args.work_dir, pipeline, args.device, stage=stage,
                               until=args.until if args.stage == stage else None, compile=args.compile)
            if result.total_seconds is not None:  # None: resumed from a checkpoint that records no time
                ledger = record_time(args.work_dir, stage, result.total_seconds)
            if not result.finished:
                print(f"{stage} stage stopped at step {result.steps} of {steps}; run again without --until to go on")
                return 0
        if args.export and args.stage in ("all", "export"):
            export(cfg, args.work_dir, args.export)
            print(f"toy model written to {args.export}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done in {time.time() - began:.0f}s")
    print(format_timings(ledger))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
