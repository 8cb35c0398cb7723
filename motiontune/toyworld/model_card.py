"""The model card (``README.md``) written into the toy model's folder, for users of diffusers' own pipeline."""

from __future__ import annotations

import os

MODEL_CARD = """\
# motiontune toy model

A 17-frame, 32x32 text-to-video model of the motiontune toy world (a tiny Wan2.1: the
`WanTransformer3DModel`, `AutoencoderKLWan` and a UMT5 text encoder over a word-level vocabulary).
Its words: `motiontune list vocabulary`. How it was trained: docs/toyworld.md of motiontune.

## In diffusers' own `WanPipeline`

The folder loads with diffusers' stock pipeline. Pass **`max_sequence_length=16`**, the length of
this model's tokenizer and the one it was trained with: `WanPipeline` pads every prompt's text
embedding with zeros up to `max_sequence_length` (default 512), and the model's cross-attention
attends to those zero tokens too, so the default gives another video (a gray background comes out
brown). The pipeline's call takes this length only as an argument; no saved setting changes its
default. The sizes and sampling settings below are this model's own (`motiontune_defaults.json`);
the pipeline's defaults (81 frames of 480x832, 50 steps, guidance 5) are those of Wan2.1.

```python
import torch
from diffusers import WanPipeline

pipe = WanPipeline.from_pretrained("path/to/this/folder")
video = pipe("a red circle moves right on a gray background", num_frames=17, height=32, width=32,
             num_inference_steps=30, guidance_scale=4.0, max_sequence_length=16,
             generator=torch.Generator().manual_seed(0), output_type="pt").frames[0]
```

With these arguments the video equals motiontune's (`motiontune generate --backbone toy`, same
seed) to within 0.001 on a 0-255 scale; with the default `max_sequence_length` the mean absolute
difference was 58 on that prompt.

A LoRA trained with motiontune's plain-LoRA recipes loads with
`pipe.load_lora_weights("path/to/adapter/folder")` (the diffusers-format file in the adapter folder)
or from the file `motiontune export ADAPTER --format comfyui` writes; the same argument applies.
"""


def write_model_card(folder: str) -> str:
    from motiontune.utils.files import atomic_write_text

    path = os.path.join(folder, "README.md")
    atomic_write_text(path, MODEL_CARD)
    return path
