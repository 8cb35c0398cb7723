"""The timestep probe: invert a reference video, resample it with an edited caption over a
range of timesteps, and measure how appearance edit trades against motion preservation.

See :mod:`motiontune.probe.probe` for the procedure and :mod:`motiontune.probe.inversion` for
DDIM / flow-matching inversion. ``motiontune probe`` is the command line.
"""

from motiontune.probe.inversion import (
    InversionResult,
    Reconstruction,
    decode,
    encode,
    invert,
    probe_scheduler,
    psnr,
    reconstruct,
    resample,
)
from motiontune.probe.probe import (
    CAPTION_SCHEDULE,
    Probe,
    ProbeConfig,
    ProbeResult,
    edit_resample,
    edit_steps,
    grid_pairs,
    run_probe,
    suggest_tau,
    tau_values,
    uses_edit_caption,
    write_outputs,
)

__all__ = [
    "CAPTION_SCHEDULE",
    "InversionResult",
    "Probe",
    "ProbeConfig",
    "ProbeResult",
    "Reconstruction",
    "decode",
    "edit_resample",
    "edit_steps",
    "encode",
    "grid_pairs",
    "invert",
    "probe_scheduler",
    "psnr",
    "reconstruct",
    "resample",
    "run_probe",
    "suggest_tau",
    "tau_values",
    "uses_edit_caption",
    "write_outputs",
]
