"""Files and settings for other tools: LoRA export for ComfyUI (:mod:`motiontune.interop.comfyui`) and
the shipped presets (:mod:`motiontune.interop.presets`)."""
