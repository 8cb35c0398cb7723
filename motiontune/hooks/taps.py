"""Block taps: record what flows through the denoiser's transformer blocks during a forward pass.

``with BlockTaps(spec) as taps: spec.predict(...)`` registers forward hooks on the blocks of
``spec.block_sites()`` (and on ``spec.timestep_embedding_path()``) and fills, for each selected
block index ``i``, ``taps.records[i]`` with:

* ``"input"``: the block's video hidden states as it receives them;
* ``"output"``: the video hidden states it returns;
* ``"attention"``: the output of its self-attention module (``BlockSite.attention``);
* ``"feed_forward"``: the output of its feed-forward module (``BlockSite.feed_forward``);

and ``taps.timestep_embedding`` with the timestep-embedding module's output (its first output
where it returns a tuple, as HunyuanVideo's ``time_text_embed`` does).

Blocks that carry a text stream (``BlockSite.text_position != "none"``: CogVideoX and
HunyuanVideo) also get ``"input_text"`` and ``"output_text"`` (the text hidden states going in and
out), ``"attention_text"`` (the text half of the attention's ``(video, text)`` output) and, where
the feed-forward runs over the joint ``[text; video]`` / ``[video; text]`` sequence (CogVideoX's
``ff``, HunyuanVideo's single-stream ``proj_out``), ``"feed_forward_text"``; the video keys then
hold the video tokens only.  HunyuanVideo's dual-stream blocks run the text through a separate
``ff_context``, which is not tapped.

Shapes are the blocks' own: ``(B, tokens, D)`` for the DiTs, ``(B*F, h*w, D)`` in spatial and
``(B*h*w, F, D)`` in temporal Latte/UNet3D blocks.  Every call of the denoiser overwrites the
records (the last call wins; with gradient checkpointing the recomputation records the same
values again), and they are updated as the hooks fire, so a later hook of the same pass can read
the records of earlier blocks.  Tensors are kept by reference (``detach=True`` detaches them);
the hooks return nothing, so they never change the output.  The hooks are removed on exit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from motiontune.backbones.base import BackboneSpec, BlockSite
from motiontune.errors import ConfigError

TAP_KINDS = ("input", "output", "attention", "feed_forward", "timestep")


class BlockTaps:
    """Forward hooks recording block inputs/outputs, attention and feed-forward outputs and the
    timestep embedding; see the module docstring for the record keys."""

    def __init__(
        self,
        spec: BackboneSpec,
        what: Iterable[str] = TAP_KINDS,
        blocks: Iterable[int] | None = None,
        detach: bool = False,
    ):
        self.spec = spec
        self.what = (what,) if isinstance(what, str) else tuple(what)
        unknown = [w for w in self.what if w not in TAP_KINDS]
        if unknown:
            raise ConfigError(f"unknown tap kind(s) {unknown}; known: {', '.join(TAP_KINDS)}")
        all_sites = spec.block_sites()
        if blocks is None:
            self.sites: list[BlockSite] = all_sites
        else:
            wanted = sorted(set(int(b) for b in blocks))
            bad = [b for b in wanted if not 0 <= b < len(all_sites)]
            if bad:
                raise ConfigError(f"block index(es) {bad} out of range: this backbone has {len(all_sites)} blocks")
            self.sites = [all_sites[b] for b in wanted]
        self.detach = detach
        self.records: dict[int, dict[str, torch.Tensor]] = {}
        self.timestep_embedding: torch.Tensor | None = None
        self._lengths: dict[int, tuple[int, int]] = {}  # block -> (video tokens, text tokens) of the current call
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "BlockTaps":
        if self._handles:
            raise RuntimeError("BlockTaps is already active")
        self.clear()
        modules = dict(self.spec.denoiser.named_modules())
        try:
            for site in self.sites:
                self._register(site, modules)
            if "timestep" in self.what:
                module = modules[self.spec.timestep_embedding_path()]
                self._handles.append(module.register_forward_hook(self._timestep_hook))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (records stay)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget the records."""
        self.records = {site.index: {} for site in self.sites}
        self.timestep_embedding = None
        self._lengths.clear()

    # ------------------------------------------------------------------ hooks
    def _register(self, site: BlockSite, modules: dict[str, torch.nn.Module]) -> None:
        block = modules[site.path]
        # the input hook also notes the stream lengths the attention/feed-forward hooks split by
        self._handles.append(block.register_forward_pre_hook(self._input_hook(site), with_kwargs=True))
        if "output" in self.what:
            self._handles.append(block.register_forward_hook(self._output_hook(site)))
        for kind, path in (("attention", site.attention), ("feed_forward", site.feed_forward)):
            if kind in self.what and path is not None:
                self._handles.append(modules[path].register_forward_hook(self._module_hook(site, kind)))

    def _keep(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach() if self.detach else x

    def _store(self, site: BlockSite, key: str, value: torch.Tensor) -> None:
        self.records[site.index][key] = self._keep(value)

    def _input_hook(self, site: BlockSite):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            text = None
            if site.text_position != "none":
                text = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]
            self._lengths[site.index] = (hidden.shape[1], text.shape[1] if text is not None else 0)
            if "input" in self.what:
                self._store(site, "input", hidden)
                if text is not None:
                    self._store(site, "input_text", text)

        return hook

    def _output_hook(self, site: BlockSite):
        def hook(module: torch.nn.Module, args: tuple, out: Any) -> None:
            if isinstance(out, tuple):
                self._store(site, "output", out[0])
                if site.text_position != "none":
                    self._store(site, "output_text", out[1])
            else:
                self._store(site, "output", out)

        return hook

    def _module_hook(self, site: BlockSite, key: str):
        def hook(module: torch.nn.Module, args: tuple, out: Any) -> None:
            if isinstance(out, tuple):
                self._store(site, key, out[0])
                if site.text_position != "none" and len(out) > 1 and isinstance(out[1], torch.Tensor):
                    self._store(site, f"{key}_text", out[1])
                return
            video, text = self._lengths.get(site.index, (out.shape[1], 0))
            if site.text_position == "none" or text == 0 or out.shape[1] != video + text:
                self._store(site, key, out)
            elif site.text_position == "before":
                self._store(site, key, out[:, text:])
                self._store(site, f"{key}_text", out[:, :text])
            else:
                self._store(site, key, out[:, :video])
                self._store(site, f"{key}_text", out[:, video:])

        return hook

    def _timestep_hook(self, module: torch.nn.Module, args: tuple, out: Any) -> None:
        self.timestep_embedding = self._keep(out[0] if isinstance(out, tuple) else out)


__all__ = ["BlockTaps", "TAP_KINDS"]
