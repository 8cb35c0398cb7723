"""The timestep probe: invert a reference video, resample it with an edited caption over a
range of timesteps, and measure how appearance edit trades against motion preservation.

See :mod:`motiontune.probe.probe` for the procedure and :mod:`motiontune.probe.inversion` for
DDIM / flow-matching inversion. ``motiontune probe`` is the command line.

The names below are imported from those modules when first used, so that loading the
``probe`` subcommand (:mod:`motiontune.probe.commands`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "inversion": ("InversionResult", "Reconstruction", "decode", "encode", "invert", "probe_scheduler", "psnr",
                  "reconstruct", "resample"),
    "probe": ("CAPTION_SCHEDULE", "Probe", "ProbeConfig", "ProbeResult", "edit_resample", "edit_steps", "grid_pairs",
              "run_probe", "suggest_tau", "tau_values", "uses_edit_caption", "write_outputs"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_MODULE_OF)
