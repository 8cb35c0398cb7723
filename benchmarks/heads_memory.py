"""Peak memory and time of follow_your_motion's head classification on full-size Wan2.1-1.3B layers
with random weights.

Builds the published Wan2.1-T2V-1.3B transformer architecture (dim 1536, 12 heads of 128, ffn 8960,
UMT5-XXL-shaped text of 512 x 4096) with ``--layers`` blocks (default 1) and random weights, through
``benchmarks/speed.py``'s denoiser-only spec (no VAE, no text encoder: random latents and random text
embeddings of the published shapes), and measures two phases on the same random latents:

* ``forward``: one plain denoiser call (the baseline: what the model itself needs);
* ``classify``: :func:`motiontune.analysis.heads.classify_heads`: the same call with the q/k capture
  and the per-head sums streamed over chunks of ``--chunk`` queries.

Peak memory as in ``speed.py`` (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS, reset per
phase). The output also gives what one head's full attention map would take in float32
(``tokens^2 x 4`` bytes: 4 GiB at 81 x 480 x 832, 32,760 tokens), which the streaming never allocates.

At the published size one attention over 32,760 tokens is about 3.3 TFLOP per pass: run it on a GPU
(or expect a long CPU run). A smoke test at a small size::

    python benchmarks/heads_memory.py --num-frames 5 --height 64 --width 64 --threads 2
    python benchmarks/heads_memory.py --device cuda --num-frames 81 --height 480 --width 832 --chunk 256 \\
        --output-json heads_memory.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from speed import RANDOM_CONFIGS, MemoryMeter, build_random_spec, machine_info  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--layers", type=int, default=1, help="transformer blocks of the random model (published: 30)")
    p.add_argument("--chunk", type=int, default=256, help="queries per block of the streamed scores")
    p.add_argument("--criterion", choices=["cosine", "mass"], default="cosine")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-baseline", action="store_true", help="skip the plain forward phase")
    p.add_argument("--output-json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    from motiontune.analysis.heads import classify_heads

    name = f"wan2.1-1.3b-{args.layers}-layer"
    base = RANDOM_CONFIGS["wan2.1-1.3b"]
    RANDOM_CONFIGS[name] = dataclasses.replace(base, denoiser_kwargs={**base.denoiser_kwargs, "num_layers": args.layers})
    spec = build_random_spec(name, device, dtype)
    shape = spec.latent_shape(args.num_frames, args.height, args.width)
    layout = spec.token_layout(shape)
    tokens = layout.video_tokens
    heads = spec.sites("joint")[0].heads
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    caption = "a dog runs on the beach"
    out: dict = {"model": f"Wan2.1-T2V-1.3B architecture, {args.layers} block(s), random weights",
                 "size": [args.num_frames, args.height, args.width], "latent_shape": list(shape),
                 "grid": [layout.frames, layout.height, layout.width], "tokens": tokens, "heads": heads,
                 "chunk": args.chunk, "criterion": args.criterion, "dtype": args.dtype,
                 "dense_map_one_head_mib": round(tokens * tokens * 4 / 2**20, 1),
                 "dense_maps_one_layer_mib": round(heads * tokens * tokens * 4 / 2**20, 1),
                 "stream_block_mib": round(heads * min(args.chunk, tokens) * tokens * 4 / 2**20, 1)}
    cond = spec.encode_prompt([caption])
    if not args.no_baseline:
        t = torch.full((1,), 983.0, device=device)
        with MemoryMeter(device) as meter, torch.no_grad():
            t0 = time.perf_counter()
            spec.predict(x0, t, cond)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
        out["forward"] = {"seconds": round(seconds, 3), **meter.result()}
    with MemoryMeter(device) as meter:
        t0 = time.perf_counter()
        types = classify_heads(spec, x0, caption, criterion=args.criterion, chunk=args.chunk)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    out["classify"] = {"seconds": round(seconds, 3), **meter.result(), "timestep": types.info["timestep"],
                       "temporal_heads": types.count("temporal"), "spatial_heads": types.count("spatial")}
    out["machine"] = machine_info(device)
    text = json.dumps(out, indent=2)
    print(text)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
