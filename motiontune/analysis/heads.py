"""Attention head classification (Follow-Your-Motion, METHODS.md section 5): which heads of a
joint spatio-temporal attention attend within a frame (spatial) and which across frames (temporal).

One forward pass of the reference clip at a high-noise timestep (default: the second timestep of
the sampler's schedule, at the backbone's default sampling steps) captures the queries and keys of
every joint self-attention as they enter ``scaled_dot_product_attention`` (after the q/k norms and
RoPE), through a :class:`torch.overrides.TorchFunctionMode` active only inside those modules: no
model code is copied or changed. Each head's attention map over the video tokens is compared with
two pseudo-maps:

* spatial: query token ``i`` and key token ``j`` in the same frame;
* temporal: the same spatial position in another frame.

Criteria (``criterion``):

* ``"cosine"`` (the paper, default): ``Sim_x = <M, P_x> / (|M| |P_x|)`` over the video x video block
  of the map ``M`` (rows: the video queries; softmax over every key the model attends to, text
  included); a head is temporal if ``Sim_s < alpha * Sim_t`` (alpha = 1.3).
* ``"mass"`` (the unofficial code's): the mean attention mass inside each mask; a head is temporal
  if ``mass_t >= alpha * mass_s`` (the code: spatial if ``w_t < 1.3 w_s``). The code builds its masks
  block-banded in 128-token blocks; here the masks are exact (same frame / same position).

The maps are never materialised: the scores are computed from q and k block by block over chunks
of ``chunk`` queries (all heads of a chunk at once, ``heads x chunk x tokens`` floats), and only
per-head sums are kept (``<M, P_s>``, ``<M, P_t>``, ``|M|^2``), in float64.

Latte and UNet3D have explicit spatial and temporal attentions: nothing to classify there (their
temporal branch is their temporal attention layers); :func:`classify_heads` refuses them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import AttentionSite, BackboneSpec

log = logging.getLogger("motiontune")

CRITERIA = ("cosine", "mass")
DEFAULT_ALPHA = 1.3
DEFAULT_CHUNK = 256
HEAD_TYPES_FILE = "head_types.json"
FILE_FORMAT = "motiontune.head_types"
SPATIAL, TEMPORAL = "spatial", "temporal"


def check_criterion(value: Any) -> str:
    if value not in CRITERIA:
        raise ConfigError(f"unknown head criterion {value!r}; choose from {', '.join(CRITERIA)}")
    return str(value)


# ---------------------------------------------------------------------- streaming statistics
def head_statistics(q: torch.Tensor, k: torch.Tensor, frames: int, tokens_per_frame: int, *, text_position: str = "none",
                    scale: float | None = None, attn_mask: torch.Tensor | None = None,
                    chunk: int = DEFAULT_CHUNK) -> dict[str, torch.Tensor]:
    """Per-head sums of one self-attention call, computed from ``q``, ``k`` (``(B, H, S, D)``, as
    ``scaled_dot_product_attention`` takes them) in chunks of ``chunk`` video queries.

    The ``frames * tokens_per_frame`` video tokens are frame-major; any other tokens (text) sit
    ``"before"`` or ``"after"`` them (``text_position``). ``attn_mask`` (boolean or additive,
    broadcastable to ``(B, H, S, S)``) is applied as SDPA applies it. Returns float64 tensors of
    shape ``(H,)``: ``spatial`` = sum of the map inside the spatial mask, ``temporal`` = inside the
    temporal mask, ``square`` = sum of the squared map over the video x video block, and the
    scalars ``rows`` (video queries summed over) and ``frames``/``tokens_per_frame``."""
    if q.ndim != 4 or k.ndim != 4 or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ConfigError(f"head statistics need q and k of shape (B, H, S, D); got {tuple(q.shape)} and {tuple(k.shape)}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk must be a whole number >= 1 (got {chunk!r})")
    b, h, s, d = q.shape
    hw = int(tokens_per_frame)
    nv = int(frames) * hw
    if k.shape[2] != s or nv > s or nv < 1:
        raise ConfigError(f"a self-attention of {s} tokens cannot hold {frames} frames of {hw} video tokens")
    v0 = s - nv if text_position == "before" else 0
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    out = {n: torch.zeros(h, dtype=torch.float64, device=q.device) for n in ("spatial", "temporal", "square")}
    mask = None
    if attn_mask is not None:
        mask = attn_mask
        while mask.ndim < 4:
            mask = mask.unsqueeze(0)
        mask = mask.expand(b, h, mask.shape[-2], s)
    for bi in range(b):
        kb = k[bi].float().transpose(-1, -2)  # (H, D, S)
        for start in range(0, nv, chunk):
            end = min(start + chunk, nv)
            c = end - start
            scores = torch.matmul(q[bi, :, v0 + start:v0 + end].float(), kb) * scale  # (H, c, S)
            if mask is not None:
                rows = mask[bi] if mask.shape[-2] == 1 else mask[bi, :, v0 + start:v0 + end]
                if rows.dtype == torch.bool:
                    scores = scores.masked_fill(~rows, float("-inf"))
                else:
                    scores = scores + rows.float()
            p = scores.softmax(-1)
            del scores
            pv = p[..., v0:v0 + nv].reshape(h, c, frames, hw)
            idx = torch.arange(start, end, device=q.device)
            f_idx = (idx // hw).view(1, c, 1).expand(h, c, 1)
            p_idx = (idx % hw).view(1, c, 1, 1).expand(h, c, frames, 1)
            own_frame = pv.sum(-1).gather(-1, f_idx).squeeze(-1)           # (H, c): same frame
            column = pv.gather(-1, p_idx).squeeze(-1)                      # (H, c, F): same position, every frame
            other_frames = column.sum(-1) - column.gather(-1, f_idx).squeeze(-1)
            out["spatial"] += own_frame.sum(1).double()
            out["temporal"] += other_frames.sum(1).double()
            out["square"] += pv.square().sum((1, 2, 3)).double()
            del p, pv, column
    out["rows"] = torch.tensor(float(b * nv), dtype=torch.float64)
    out["frames"] = torch.tensor(float(frames), dtype=torch.float64)
    out["tokens_per_frame"] = torch.tensor(float(hw), dtype=torch.float64)
    return out


def head_scores(stats: dict[str, torch.Tensor], criterion: str = "cosine") -> tuple[torch.Tensor, torch.Tensor]:
    """(spatial score, temporal score) per head from :func:`head_statistics`: cosine similarities
    with the pseudo-maps (``"cosine"``) or mean attention masses inside them (``"mass"``)."""
    criterion = check_criterion(criterion)
    rows = stats["rows"].to(stats["spatial"])
    if criterion == "mass":
        return stats["spatial"] / rows, stats["temporal"] / rows
    frames, hw = float(stats["frames"]), float(stats["tokens_per_frame"])
    norm = stats["square"].clamp_min(1e-300).sqrt()
    count_s, count_t = rows * hw, rows * (frames - 1)  # entries of each pseudo-map (|P|^2)
    return stats["spatial"] / (norm * count_s.sqrt()), stats["temporal"] / (norm * count_t.clamp_min(1).sqrt())


def is_temporal(spatial: torch.Tensor, temporal: torch.Tensor, criterion: str = "cosine", alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """The paper's rule (``"cosine"``: temporal if ``Sim_s < alpha Sim_t``) or the code's (``"mass"``:
    temporal if ``mass_t >= alpha mass_s``)."""
    if check_criterion(criterion) == "cosine":
        return spatial < alpha * temporal
    return temporal >= alpha * spatial


# ---------------------------------------------------------------------- capture
_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


class _AttentionCapture(TorchFunctionMode):
    """Hands the arguments of every ``scaled_dot_product_attention`` call made while a watched module
    runs to ``on_call(path, arguments)``; the call itself runs unchanged."""

    def __init__(self, on_call):
        super().__init__()
        self.on_call = on_call
        self.active: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and self.active is not None:
            bound = dict(zip(_SDPA_ARGS, args))
            bound.update(kwargs)
            self.on_call(self.active, bound)
        return func(*args, **kwargs)


@contextlib.contextmanager
def capture_self_attention(spec: "BackboneSpec", sites: list["AttentionSite"], on_call) -> Iterator[None]:
    """While inside, each self-attention call (query and key of equal length) of the modules of
    ``sites`` calls ``on_call(site, q, k, scale, attn_mask)``; hooks and mode are removed on exit."""
    modules = dict(spec.denoiser.named_modules())
    by_path = {s.path: s for s in sites}

    def handle(path: str, a: dict[str, Any]) -> None:
        q, k = a["query"], a["key"]
        if q.ndim == 4 and k.ndim == 4 and q.shape[2] == k.shape[2]:
            on_call(by_path[path], q, k, a.get("scale"), a.get("attn_mask"))

    mode = _AttentionCapture(handle)
    handles = []

    def enter(path):
        def pre(module, args):
            mode.active = path
        return pre

    def leave(module, args, out):
        mode.active = None

    try:
        for s in sites:
            m = modules[s.path]
            handles.append(m.register_forward_pre_hook(enter(s.path)))
            handles.append(m.register_forward_hook(leave))
        with mode:
            yield
    finally:
        for hd in handles:
            hd.remove()


# ---------------------------------------------------------------------- head types
@dataclass
class HeadTypes:
    """The type of every head of every joint self-attention of a model."""

    #: one entry per attention: ``{"path", "heads", "types": ["spatial"|"temporal", ...],
    #: "spatial_score": [...], "temporal_score": [...]}`` (scores absent for a fixed split)
    layers: list[dict[str, Any]]
    criterion: str = "cosine"
    alpha: float = DEFAULT_ALPHA
    #: what the types came from: "classified" (a forward pass of a reference) or "half" (a fixed split)
    method: str = "classified"
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ queries
    def heads_of(self, path: str, kind: str) -> list[int]:
        for layer in self.layers:
            if layer["path"] == path:
                return [i for i, t in enumerate(layer["types"]) if t == kind]
        raise ConfigError(f"the head types name no attention {path!r}")

    def count(self, kind: str) -> int:
        return sum(t == kind for layer in self.layers for t in layer["types"])

    def summary(self) -> list[str]:
        """One line per attention: its temporal heads."""
        lines = []
        for layer in self.layers:
            temporal = [i for i, t in enumerate(layer["types"]) if t == TEMPORAL]
            lines.append(f"{layer['path']}: {len(temporal)}/{layer['heads']} temporal heads"
                         + (f" ({', '.join(map(str, temporal))})" if temporal else ""))
        lines.append(f"total: {self.count(TEMPORAL)} temporal, {self.count(SPATIAL)} spatial heads")
        return lines

    # ------------------------------------------------------------------ checks
    def check(self, spec: "BackboneSpec", where: str = "the head types") -> None:
        """ConfigError (one line) unless these types fit ``spec``'s joint self-attentions."""
        sites = spec.sites("joint")
        mine = [(layer.get("path"), layer.get("heads")) for layer in self.layers]
        theirs = [(s.path, s.heads) for s in sites]
        if mine != theirs:
            have_h = sorted({h for _, h in mine if h is not None})
            want_h = sorted({s.heads for s in sites})
            raise ConfigError(f"{where}: made for a model with {len(mine)} attention layers of {'/'.join(map(str, have_h)) or '?'} heads; "
                              f"this {spec.family} model has {len(theirs)} of {'/'.join(map(str, want_h)) or '?'} heads")
        for layer in self.layers:
            if len(layer.get("types", [])) != layer["heads"] or any(t not in (SPATIAL, TEMPORAL) for t in layer["types"]):
                raise ConfigError(f"{where}: layer {layer['path']} needs {layer['heads']} types, each spatial or temporal")

    def require_both(self, where: str = "head classification") -> None:
        """ConfigError when a branch would be empty (no temporal, or no spatial, heads)."""
        for kind in (TEMPORAL, SPATIAL):
            if self.count(kind) == 0:
                raise ConfigError(f"{where} left no {kind} heads (criterion {self.criterion}, alpha {self.alpha:g}): the {kind} branch "
                                  f"would be empty; try another alpha, timestep or reference, or give a head types file")

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {"format": FILE_FORMAT, "version": 1, "criterion": self.criterion, "alpha": self.alpha, "method": self.method,
                "info": self.info, "layers": self.layers}

    @classmethod
    def from_dict(cls, data: Any, where: str = "head types") -> "HeadTypes":
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or not isinstance(data.get("layers"), list):
            raise ConfigError(f"{where}: not a head types file (written by `motiontune heads`)")
        for layer in data["layers"]:
            if not (isinstance(layer, dict) and isinstance(layer.get("path"), str) and isinstance(layer.get("heads"), int)
                    and isinstance(layer.get("types"), list)):
                raise ConfigError(f"{where}: every layer needs a path, a head count and a list of types")
        return cls(data["layers"], data.get("criterion", "cosine"), float(data.get("alpha", DEFAULT_ALPHA)),
                   data.get("method", "classified"), data.get("info", {}))

    def save(self, path: str) -> str:
        from motiontune.utils.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str) -> "HeadTypes":
        if os.path.isdir(path):
            path = os.path.join(path, HEAD_TYPES_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such head types file")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable head types file ({exc})") from None
        return cls.from_dict(data, path)


def fixed_split(spec: "BackboneSpec") -> HeadTypes:
    """A fixed split, no classification: in each joint attention the first half of the heads
    spatial, the rest temporal (a one-head layer: temporal)."""
    layers = []
    for s in spec.sites("joint"):
        half = s.heads // 2
        layers.append({"path": s.path, "heads": s.heads, "types": [SPATIAL] * half + [TEMPORAL] * (s.heads - half)})
    return HeadTypes(layers, criterion="none", alpha=0.0, method="half")


def default_timestep(spec: "BackboneSpec", steps: int | None = None, index: int = 1) -> float:
    """The ``index``-th timestep (default the second) of the sampler's schedule at ``steps`` steps
    (default: the backbone's sampling steps), in native units."""
    scheduler = spec.fresh_scheduler()
    scheduler.set_timesteps(int(steps or spec.default_steps), device="cpu")
    ts = scheduler.timesteps
    return float(ts[min(index, len(ts) - 1)])


def joint_sites(spec: "BackboneSpec") -> list["AttentionSite"]:
    sites = spec.sites("joint")
    if not sites:
        if spec.sites("temporal"):
            raise ConfigError(f"{spec.family} has explicit temporal attention layers: there is nothing to classify "
                              f"(its temporal branch is those layers)")
        raise ConfigError(f"{spec.family} has no joint spatio-temporal self-attention to classify")
    return sites


def check_grid(frames: int, tokens_per_frame: int, what: str = "the reference") -> None:
    if frames < 2 or tokens_per_frame < 2:
        raise ConfigError(f"{what} gives {frames} latent frame(s) of {tokens_per_frame} token(s): head classification needs "
                          f"at least 2 frames of at least 2 tokens (use more frames or a larger size)")


@torch.no_grad()
def classify_heads(spec: "BackboneSpec", x0: torch.Tensor, caption: str, *, timestep: float | None = None,
                   criterion: str = "cosine", alpha: float = DEFAULT_ALPHA, chunk: int = DEFAULT_CHUNK,
                   seed: int = 0) -> HeadTypes:
    """Classify every head of every joint self-attention of ``spec`` from one forward pass of the
    clean latents ``x0`` (``(1, C, f, h, w)``) noised to ``timestep`` (default
    :func:`default_timestep`) with seeded noise, conditioned on ``caption``."""
    from motiontune.backbones.base import BackboneSpec  # noqa: F401  (typing only)
    from motiontune.hooks.call import eval_mode

    criterion = check_criterion(criterion)
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"alpha must be a positive number (got {alpha!r})")
    sites = joint_sites(spec)
    layout = spec.token_layout(tuple(x0.shape))
    check_grid(layout.frames, layout.tokens_per_frame)
    t_value = default_timestep(spec) if timestep is None else float(timestep)
    text_position = {b.attention: b.text_position for b in spec.block_sites()}
    x0 = x0.to(spec.device, torch.float32)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed))).to(x0)
    t = torch.full((x0.shape[0],), t_value, device=spec.device)
    x_t = spec.schedule.add_noise(x0, noise, t)
    cond = spec.encode_prompt([caption] * x0.shape[0])
    stats: dict[str, dict[str, torch.Tensor]] = {}

    def on_call(site, q, k, scale, mask):
        if site.path in stats:
            return
        stats[site.path] = head_statistics(q, k, layout.frames, layout.tokens_per_frame,
                                           text_position=text_position.get(site.path, "none"), scale=scale, attn_mask=mask,
                                           chunk=chunk)

    with eval_mode(spec.denoiser), capture_self_attention(spec, sites, on_call):
        spec.predict(x_t, t, cond)
    missing = [s.path for s in sites if s.path not in stats]
    if missing:
        raise ConfigError(f"no self-attention call was seen in {missing[0]} (an attention backend other than "
                          f"torch's scaled_dot_product_attention?)")
    layers = []
    for s in sites:
        sp, tp = head_scores(stats[s.path], criterion)
        temporal = is_temporal(sp, tp, criterion, float(alpha))
        layers.append({"path": s.path, "heads": s.heads, "types": [TEMPORAL if x else SPATIAL for x in temporal.tolist()],
                       "spatial_score": [float(v) for v in sp], "temporal_score": [float(v) for v in tp]})
    info = {"family": spec.family, "source": getattr(spec, "name", spec.source), "timestep": t_value, "seed": int(seed),
            "latent_shape": list(x0.shape), "grid": [layout.frames, layout.height, layout.width], "caption": caption}
    return HeadTypes(layers, criterion, float(alpha), "classified", info)


def _heatmap_pil(value: Any, path: str, cell: int = 24) -> str:
    import numpy as np
    from PIL import Image

    v = np.nan_to_num(value, nan=0.0)
    lim = max(1e-6, float(np.abs(v).max()))
    x = np.clip(v / lim, -1, 1)[..., None]
    red, blue, white = np.array([200, 40, 40]), np.array([40, 70, 200]), np.array([235, 235, 235])
    rgb = np.where(x > 0, white + x * (red - white), white + (-x) * (blue - white)).astype(np.uint8)
    Image.fromarray(rgb).resize((rgb.shape[1] * cell, rgb.shape[0] * cell), Image.NEAREST).save(path)
    return path


def write_heatmap(types: HeadTypes, path: str) -> str:
    """A PNG heatmap, layers x heads, coloured by type (red: temporal, blue: spatial), the shade by
    how far the score ratio lies from the threshold."""
    import numpy as np

    rows = len(types.layers)
    cols = max((layer["heads"] for layer in types.layers), default=1)
    value = np.full((rows, cols), np.nan)
    for i, layer in enumerate(types.layers):
        for j, t in enumerate(layer["types"]):
            if "spatial_score" in layer:
                s, tt = layer["spatial_score"][j], layer["temporal_score"][j]
                a = types.alpha or 1.0
                ratio = (a * tt / max(s, 1e-12)) if types.criterion == "cosine" else (tt / max(a * s, 1e-12))
                value[i, j] = float(np.clip(np.log(max(ratio, 1e-12)), -3, 3))
            else:
                value[i, j] = 1.0 if t == TEMPORAL else -1.0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # no matplotlib: the same grid, one cell per head, with PIL
        return _heatmap_pil(value, path)

    fig, ax = plt.subplots(figsize=(max(3.0, 0.5 * cols + 2), max(2.0, 0.3 * rows + 1.5)))
    lim = max(1e-6, float(np.nanmax(np.abs(value))) if np.isfinite(value).any() else 1.0)
    im = ax.imshow(value, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    for i, layer in enumerate(types.layers):
        for j, t in enumerate(layer["types"]):
            ax.text(j, i, "T" if t == TEMPORAL else "S", ha="center", va="center", fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"head types ({types.criterion}, alpha {types.alpha:g}); red: temporal", fontsize=8)
    fig.colorbar(im, ax=ax, label="log score ratio (>0: temporal)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["CRITERIA", "HEAD_TYPES_FILE", "HeadTypes", "capture_self_attention", "classify_heads", "default_timestep",
           "fixed_split", "head_scores", "head_statistics", "is_temporal", "write_heatmap"]
