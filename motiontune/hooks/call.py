"""The one place the denoiser is called from: training, validation, sampling and the probe.

:func:`denoiser_call` lets the recipe edit the text conditioning (``Recipe.condition``) and
wraps the call in the recipe's context (``Recipe.forward_context``: temporal positions,
attention capture, block taps ...), so a method's hooks act the same in every phase.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from motiontune.utils import threads

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec, Conditioning
    from motiontune.recipes.base import Recipe

PHASES = ("train", "validation", "sample", "probe")


@dataclass
class DenoiserCall:
    """What a recipe's hooks learn about one denoiser call."""

    phase: str  # one of PHASES
    t: torch.Tensor
    latent_shape: tuple[int, ...]
    #: frame indices of the clip in the source video (training with frame sampling), else None
    frame_indices: torch.Tensor | None = None
    #: the training pass's name ("" outside training)
    pass_name: str = ""
    #: for guided calls, how many leading batch entries hold the unconditional half (0 if none)
    uncond_batch: int = 0
    step: int | None = None


def denoiser_call(
    spec: "BackboneSpec",
    recipe: "Recipe | None",
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: "Conditioning",
    call: DenoiserCall,
    **kwargs: Any,
) -> torch.Tensor:
    """``spec.predict`` with the recipe's conditioning edit and forward context applied."""
    threads.tick()  # adapt torch's thread count to the machine's load (motiontune.utils.threads)
    if recipe is None:
        return spec.predict(x_t, t, cond, **kwargs)
    cond = recipe.condition(cond, call)
    with recipe.forward_context(call):
        return spec.predict(x_t, t, cond, **kwargs)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Every submodule in eval mode for the duration (adapter dropout layers injected after loading
    start in training mode), then each restored to the mode it had."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
