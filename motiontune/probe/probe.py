"""The timestep probe: where along the denoising trajectory a model settles motion vs appearance.

Procedure (METHODS.md section 1; paper section 3.2-3.4):

1. Invert the reference video ``x0`` with its caption ``c`` (:mod:`motiontune.probe.inversion`)
   and check the inversion: resampling with ``c`` everywhere gives the reconstruction, whose
   PSNR against the input is reported (next to the VAE's own encode-decode PSNR, its ceiling).
2. For every pair ``tau_start > tau_end`` of a grid over [0, 1000] (step 100 by default, native
   timesteps), resample from the fully inverted latent at T with the caption schedule

       c   for t >= tau_start,
       c'  for tau_end <= t < tau_start,
       c   for t < tau_end,

   where ``c'`` is the edited caption (new subject, same motion). This is our reading of the
   paper's ``c'_t = c'`` for ``t in [tau_start, tau_end]``: its worked example (tau_start = 700,
   tau_end = 0) "preserves the information from t in [700, 1000]", so the original caption keeps
   the steps at and above tau_start, and tau_start = tau_end is an empty edit interval (the
   output is then exactly the reconstruction). The same boundary convention as the ``timestep``
   recipe, whose adapter acts while t >= tau: tau plays the role of tau_start.
   (``start="inverted"`` instead starts each pair from the inverted latent at the first step
   below tau_start, skipping the c-steps above it; identical up to the inversion error.)
3. Score each output against the reference: motion preservation by
   :func:`motiontune.evaluation.metrics.flow_similarity` (Lucas-Kanade flow on a grid,
   cosine of unit flow vectors, averaged over points and frame pairs); appearance edit by the
   CLIP score change ``CLIP-T(output, c') - CLIP-T(x0, c')`` (x100) when CLIP weights are
   given, and, when ``c'`` is a caption a registered subject matcher reads (:data:`SUBJECT_MATCHERS`:
   the toy world's, for toy-world captions), by the subject match with ``c'`` (for the toy
   oracle the fraction of colour and shape that match: 0, 0.5 or 1) minus the reference's. The
   appearance score used for the heatmap and the suggestion is the CLIP change when CLIP is
   given, else the subject-match change.
4. Suggest tau on the trade-off curve at the smallest tau_end (0): the largest tau_start whose
   appearance score reaches ``appearance_fraction`` (default 0.8) of the curve's best while the
   motion score stays at or above the threshold (default ``motion_fraction`` = 0.9 times the
   reconstruction's own motion score; ``motion_threshold`` sets an absolute one). The largest
   such tau_start hands the most steps to the new prompt, i.e. the narrowest adapter range
   ``[tau, T]`` that still carries the motion. None, with the reason, when no point qualifies.

Outputs (:func:`write_outputs`): ``probe.json`` with every grid cell, ``heatmap_motion.png``,
``heatmap_appearance.png``, ``tradeoff.png`` and, with ``save_videos``, the reconstruction
and the tau_end = 0 videos.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import torch

from motiontune.data.video_io import to_uint8_frames
from motiontune.diffusion.schedules import NUM_TRAIN_TIMESTEPS
from motiontune.errors import ConfigError
from motiontune.evaluation.metrics import flow_similarity
from motiontune.probe.inversion import InversionResult, Reconstruction, decode, reconstruct, resample
from motiontune.utils.progress import progress as progress_bar
from motiontune.utils.targets import Target, check_target, resolve_target

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

JSON_NAME = "probe.json"
HEATMAP_MOTION = "heatmap_motion.png"
HEATMAP_APPEARANCE = "heatmap_appearance.png"
TRADEOFF = "tradeoff.png"
CAPTION_SCHEDULE = "c for t >= tau_start; c' for tau_end <= t < tau_start; c for t < tau_end; from the inverted latent at T"


@dataclass
class ProbeConfig:
    #: spacing of the (tau_start, tau_end) grid over [0, 1000], native timesteps
    grid_step: int = 100
    #: sampling (and inversion) steps; None: the backbone's default
    num_inference_steps: int | None = None
    #: classifier-free guidance while resampling and while inverting (1: none)
    guidance: float = 1.0
    inversion_guidance: float = 1.0
    negative_prompt: str = ""
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    #: "T": every pair starts from the fully inverted latent (the paper); "inverted": from the
    #: inverted latent at the first step below tau_start
    start: Literal["T", "inverted"] = "T"
    #: grid spacing (pixels) of the Lucas-Kanade points of flow_similarity
    flow_grid_step: int = 8
    appearance_fraction: float = 0.8
    motion_fraction: float = 0.9
    motion_threshold: float | None = None
    save_videos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.grid_step, float) and self.grid_step.is_integer():
            self.grid_step = int(self.grid_step)
        if isinstance(self.grid_step, bool) or not isinstance(self.grid_step, (int, np.integer)) or not 1 <= self.grid_step <= NUM_TRAIN_TIMESTEPS:
            raise ConfigError(f"the tau grid step must be a whole number of timesteps in [1, {NUM_TRAIN_TIMESTEPS}] (got {self.grid_step})")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ConfigError(f"steps must be >= 1 (got {self.num_inference_steps})")
        if self.start not in ("T", "inverted"):
            raise ConfigError(f"start must be 'T' or 'inverted' (got {self.start!r})")
        if self.flow_grid_step < 1:
            raise ConfigError(f"flow_grid_step must be >= 1 pixel (got {self.flow_grid_step})")
        for name in ("appearance_fraction", "motion_fraction"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"{name} must lie in (0, 1] (got {v})")
        if self.guidance <= 0 or self.inversion_guidance <= 0:
            raise ConfigError("guidance scales must be positive")


def tau_values(step: int) -> list[float]:
    """Grid values 0, step, 2 step, ... and 1000."""
    values = list(range(0, NUM_TRAIN_TIMESTEPS + 1, int(step)))
    if values[-1] != NUM_TRAIN_TIMESTEPS:
        values.append(NUM_TRAIN_TIMESTEPS)
    return [float(v) for v in values]


def grid_pairs(step: int) -> list[tuple[float, float]]:
    """Every (tau_start, tau_end) of the grid with tau_start > tau_end."""
    values = tau_values(step)
    return [(s, e) for s in values for e in values if s > e]


def uses_edit_caption(t: float, tau_start: float, tau_end: float) -> bool:
    """Whether the edited caption conditions the step at native timestep ``t``."""
    return tau_end <= t < tau_start


def edit_steps(timesteps: list[float], tau_start: float, tau_end: float) -> list[int]:
    return [i for i, t in enumerate(timesteps) if uses_edit_caption(t, tau_start, tau_end)]


@torch.no_grad()
def edit_resample(
    spec: "BackboneSpec",
    inversion: InversionResult,
    caption: str,
    edit_caption: str,
    tau_start: float,
    tau_end: float,
    guidance: float = 1.0,
    negative_prompt: str = "",
    start: str = "T",
) -> torch.Tensor:
    """One probe output (clean latents): resample with ``edit_caption`` on [tau_end, tau_start)."""
    k = 0 if start == "T" else inversion.step_index(tau_start)
    return resample(
        spec, inversion, lambda t: edit_caption if uses_edit_caption(t, tau_start, tau_end) else caption,
        guidance, negative_prompt, start_step=k,
    )


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


#: name -> a function caption -> (frames uint8 (F, H, W, 3) -> subject match in [0, 1], NaN when
#: unreadable), returning None for a caption it cannot read; a callable or a "module:function"
#: string imported when a probe first scores appearance. The toy world's reads toy-world captions
#: (motiontune/toyworld/plugin.py; the probe never imports the toy world itself).
SUBJECT_MATCHERS: dict[str, Target] = {"toy": "motiontune.toyworld.plugin:subject_matcher"}


def register_subject_matcher(name: str, matcher: Target) -> None:
    """Add a subject matcher (see :data:`SUBJECT_MATCHERS`); a name given again is replaced."""
    try:
        check_target(matcher)
    except ValueError as exc:
        raise ConfigError(f"subject matcher {name!r}: {exc}") from exc
    SUBJECT_MATCHERS[name] = matcher


def subject_match_for(caption: str) -> Callable[[np.ndarray], float] | None:
    """The first registered matcher's frames -> score function that reads ``caption``, or None.

    A matcher whose module cannot be imported is passed over."""
    for matcher in SUBJECT_MATCHERS.values():
        try:
            reader = resolve_target(matcher)
        except ImportError:
            continue
        match = reader(caption)
        if match is not None:
            return match
    return None


class AppearanceScorer:
    """CLIP-T change and subject match (a registered matcher's, e.g. the toy world's) with the
    edited caption."""

    def __init__(self, reference: np.ndarray, edit_caption: str, clip: Any = None, device: str = "cpu"):
        self.edit_caption = edit_caption
        self.clip = None
        if clip is not None:
            from motiontune.evaluation.learned import ClipEmbedder

            self.clip = ClipEmbedder.load(clip, device=str(device)) if isinstance(clip, str) else clip
        self.subject_match_fn = subject_match_for(edit_caption)
        self.reference = self.raw(reference)

    @property
    def metric(self) -> str | None:
        if self.clip is not None:
            return "clip_change"
        if self.subject_match_fn is not None:
            return "subject_match_change"
        return None

    def clip_score(self, frames: np.ndarray) -> float:
        from motiontune.evaluation.learned import clip_t

        return clip_t(frames, self.edit_caption, self.clip)

    def subject_match(self, frames: np.ndarray) -> float:
        return float(self.subject_match_fn(frames))

    def raw(self, frames: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.clip is not None:
            out["clip_score"] = self.clip_score(frames)
        if self.subject_match_fn is not None:
            out["subject_match"] = self.subject_match(frames)
        return out

    def score(self, frames: np.ndarray) -> dict[str, float]:
        out = self.raw(frames)
        if "clip_score" in out:
            out["clip_change"] = out["clip_score"] - self.reference["clip_score"]
        if "subject_match" in out:
            out["subject_match_change"] = out["subject_match"] - self.reference["subject_match"]
        metric = self.metric
        out["appearance"] = out[metric] if metric else float("nan")
        return out


@dataclass
class ProbeResult:
    caption: str
    edit_caption: str
    timesteps: list[float]
    rows: list[dict[str, Any]]
    reconstruction: dict[str, Any]
    inversion: dict[str, Any]
    reference: dict[str, Any]
    appearance_metric: str | None
    suggestion: dict[str, Any]
    settings: dict[str, Any]
    backbone: dict[str, Any] = field(default_factory=dict)
    video: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    videos: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def tradeoff(self) -> list[dict[str, Any]]:
        """Rows at the smallest tau_end (0), by tau_start."""
        low = min(r["tau_end"] for r in self.rows)
        return sorted((r for r in self.rows if r["tau_end"] == low), key=lambda r: r["tau_start"])

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "backbone": self.backbone,
            "video": self.video,
            "caption": self.caption,
            "edit_caption": self.edit_caption,
            "caption_schedule": CAPTION_SCHEDULE,
            "settings": self.settings,
            "timesteps": self.timesteps,
            "inversion": self.inversion,
            "reference": self.reference,
            "reconstruction": self.reconstruction,
            "appearance_metric": self.appearance_metric,
            "grid": self.rows,
            "tradeoff": self.tradeoff,
            "suggestion": self.suggestion,
            "files": self.files,
        })


def suggest_tau(
    tradeoff: list[dict[str, Any]],
    reconstruction_motion: float,
    appearance_available: bool,
    appearance_fraction: float = 0.8,
    motion_fraction: float = 0.9,
    motion_threshold: float | None = None,
) -> dict[str, Any]:
    """The largest tau_start of the trade-off curve with appearance >= fraction x best and motion >= threshold."""
    threshold = motion_threshold if motion_threshold is not None else motion_fraction * reconstruction_motion
    out: dict[str, Any] = {
        "tau": None,
        "tau_end": tradeoff[0]["tau_end"] if tradeoff else 0.0,
        "rule": (
            "largest tau_start at the smallest tau_end with appearance >= appearance_fraction x the curve's best "
            "and motion >= motion_threshold"
        ),
        "appearance_fraction": appearance_fraction,
        "motion_threshold": threshold,
        "motion_threshold_rule": "given" if motion_threshold is not None else f"{motion_fraction} x the reconstruction's motion score",
        "reason": None,
    }
    if not appearance_available:
        out["reason"] = "no appearance score: give CLIP weights (--clip) or toy-world captions"
        return out
    if not _finite(threshold):
        out["reason"] = "the reconstruction's motion score is undefined (no trackable points); give motion_threshold"
        return out
    scores = [r["appearance"] for r in tradeoff if _finite(r["appearance"])]
    best = max(scores) if scores else None
    if best is None or best <= 0:
        out["reason"] = "the edited caption never raised the appearance score on the trade-off curve"
        return out
    out["best_appearance"] = best
    ok = [
        r for r in tradeoff
        if _finite(r["appearance"]) and r["appearance"] >= appearance_fraction * best
        and _finite(r["motion"]) and r["motion"] >= threshold
    ]
    if not ok:
        out["reason"] = "no tau_start reaches the appearance fraction while keeping the motion threshold"
        return out
    pick = max(ok, key=lambda r: r["tau_start"])
    out.update(tau=pick["tau_start"], appearance=pick["appearance"], motion=pick["motion"])
    return out


class Probe:
    """Runs the probe for one reference video; see the module docstring."""

    def __init__(
        self,
        spec: "BackboneSpec",
        video: Any,
        caption: str,
        edit_caption: str,
        config: ProbeConfig | None = None,
        clip: Any = None,
        progress: bool = False,
    ):
        from motiontune.data.frames import prepare_video
        from motiontune.diffusion.sampling import SamplingConfig

        if not caption or not edit_caption:
            raise ConfigError("the probe needs the reference caption and an edited caption")
        self.spec = spec
        self.config = config or ProbeConfig()
        cfg = self.config
        sampling = SamplingConfig(
            num_inference_steps=cfg.num_inference_steps, num_frames=cfg.num_frames, height=cfg.height, width=cfg.width
        ).resolved(spec)
        self.steps, self.size = sampling.num_inference_steps, (sampling.num_frames, sampling.height, sampling.width)
        f, h, w = self.size
        if isinstance(video, torch.Tensor) and video.ndim == 5:
            video = video[0]
        self.video_name = str(video) if isinstance(video, (str, os.PathLike)) else None
        self.pixels = prepare_video(video, f, h, w, frame_rule=spec.frame_rule).unsqueeze(0)  # (1, 3, F, H, W)
        self.reference = to_uint8_frames(self.pixels[0])
        self.caption, self.edit_caption = caption, edit_caption
        self.progress = progress
        self.appearance = AppearanceScorer(self.reference, edit_caption, clip, device=str(spec.device))
        self._recon: Reconstruction | None = None
        self._cache: dict[tuple, dict[str, Any]] = {}

    # ------------------------------------------------------------------ pieces
    @property
    def reconstruction(self) -> Reconstruction:
        if self._recon is None:
            cfg = self.config
            self._recon = reconstruct(
                self.spec, self.pixels, self.caption, self.steps, cfg.guidance, cfg.inversion_guidance, cfg.negative_prompt,
                progress=self.progress,
            )
        return self._recon

    @property
    def inversion(self) -> InversionResult:
        return self.reconstruction.inversion

    def output_latents(self, tau_start: float, tau_end: float) -> torch.Tensor:
        """Probe output for one pair. With ``start="T"`` the steps above the edit interval are the
        reconstruction's own (same captions, same states), so sampling resumes from its state."""
        cfg, recon, inv = self.config, self.reconstruction, self.inversion
        steps = edit_steps(inv.timesteps, tau_start, tau_end)
        if cfg.start == "T":
            if not steps:
                return recon.latents
            k, init = steps[0], recon.states[steps[0]]
        else:
            k = inv.step_index(tau_start)
            init = inv.latents[k]
        return resample(
            self.spec, inv,
            lambda t: self.edit_caption if uses_edit_caption(t, tau_start, tau_end) else self.caption,
            cfg.guidance, cfg.negative_prompt, start_step=k, latents=init,
        )

    def score(self, pixels: torch.Tensor) -> dict[str, Any]:
        frames = to_uint8_frames(pixels[0])
        out: dict[str, Any] = {"motion": flow_similarity(frames, self.reference, grid_step=self.config.flow_grid_step)}
        out.update(self.appearance.score(frames))
        return out

    # ------------------------------------------------------------------ the grid
    def run(self) -> ProbeResult:
        cfg, spec = self.config, self.spec
        recon = self.reconstruction
        inv = recon.inversion
        recon_scores = self.score(recon.pixels)
        videos: dict[str, torch.Tensor] = {"reconstruction": recon.pixels} if cfg.save_videos else {}
        rows = []
        pairs = grid_pairs(cfg.grid_step)
        low_end = min(e for _, e in pairs)
        for tau_start, tau_end in progress_bar(pairs, desc="probe grid", disable=not self.progress, leave=False):
            steps = edit_steps(inv.timesteps, tau_start, tau_end)
            key = (inv.step_index(tau_start) if cfg.start == "inverted" else None, tuple(steps))
            if key not in self._cache:
                pixels = decode(spec, self.output_latents(tau_start, tau_end), self.size[0])
                self._cache[key] = {"scores": self.score(pixels), "pixels": pixels if cfg.save_videos else None}
            hit = self._cache[key]
            if cfg.save_videos and tau_end == low_end:
                videos[f"start{int(tau_start):04d}_end{int(tau_end):04d}"] = hit["pixels"]
            rows.append({
                "tau_start": tau_start,
                "tau_end": tau_end,
                "edit_steps": len(steps),
                "edit_timesteps": [inv.timesteps[i] for i in steps],
                **hit["scores"],
            })
        tradeoff = sorted((r for r in rows if r["tau_end"] == low_end), key=lambda r: r["tau_start"])
        suggestion = suggest_tau(
            tradeoff, recon_scores["motion"], self.appearance.metric is not None,
            cfg.appearance_fraction, cfg.motion_fraction, cfg.motion_threshold,
        )
        settings = {**asdict(cfg), "num_inference_steps": self.steps, "num_frames": self.size[0], "height": self.size[1],
                    "width": self.size[2], "clip": self.appearance.clip is not None}
        return ProbeResult(
            caption=self.caption,
            edit_caption=self.edit_caption,
            timesteps=inv.timesteps,
            rows=rows,
            reconstruction=recon_scores,
            inversion={"psnr": recon.psnr, "vae_psnr": recon.vae_psnr, "steps": inv.num_steps,
                       "guidance": inv.guidance, **inv.info, "trajectory_length": len(inv.latents)},
            reference=dict(self.appearance.reference),
            appearance_metric=self.appearance.metric,
            suggestion=suggestion,
            settings=settings,
            backbone={"family": spec.family, "source": spec.source, "prediction": spec.schedule.prediction_type},
            video=self.video_name,
            videos=videos,
        )


def run_probe(
    spec: "BackboneSpec",
    video: Any,
    caption: str,
    edit_caption: str,
    config: ProbeConfig | None = None,
    clip: Any = None,
    output_dir: str | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Run the probe; with ``output_dir``, also write the JSON, the heatmaps and the trade-off plot."""
    result = Probe(spec, video, caption, edit_caption, config, clip, progress).run()
    if output_dir:
        write_outputs(result, output_dir, fps=getattr(spec, "default_fps", 8))
    return result


# ---------------------------------------------------------------------- outputs
def _matrix(result: ProbeResult, key: str) -> tuple[np.ndarray, list[float], list[float]]:
    starts = sorted({r["tau_start"] for r in result.rows})
    ends = sorted({r["tau_end"] for r in result.rows})
    m = np.full((len(starts), len(ends)), np.nan)
    for r in result.rows:
        v = r.get(key)
        m[starts.index(r["tau_start"]), ends.index(r["tau_end"])] = v if _finite(v) else np.nan
    return m, starts, ends


def _heatmap(result: ProbeResult, key: str, title: str, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m, starts, ends = _matrix(result, key)
    fig = Figure(figsize=(6.4, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_invalid(m)
    image = ax.imshow(masked, origin="lower", cmap="viridis", aspect="auto")
    ax.set_facecolor("#dddddd")
    ax.set_xticks(range(len(ends)), [f"{e:g}" for e in ends], rotation=45)
    ax.set_yticks(range(len(starts)), [f"{s:g}" for s in starts])
    ax.set_xlabel("tau_end")
    ax.set_ylabel("tau_start")
    ax.set_title(title)
    if len(starts) * len(ends) <= 144 and masked.count():
        lo, hi = float(masked.min()), float(masked.max())
        for i in range(len(starts)):
            for j in range(len(ends)):
                if np.isfinite(m[i, j]):
                    light = hi > lo and (m[i, j] - lo) / (hi - lo) > 0.6
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color="black" if light else "white")
    if masked.count():
        fig.colorbar(image, ax=ax)
    else:
        ax.text(0.5, 0.5, "no score", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path)


def _tradeoff_plot(result: ProbeResult, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve = result.tradeoff
    xs = [r["tau_start"] for r in curve]
    motion = [r["motion"] if _finite(r["motion"]) else np.nan for r in curve]
    appearance = [r["appearance"] if _finite(r["appearance"]) else np.nan for r in curve]
    fig = Figure(figsize=(11, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.plot(xs, motion, "o-", color="tab:blue", label="motion (flow similarity)")
    ax1.set_xlabel(f"tau_start (tau_end = {curve[0]['tau_end']:g})" if curve else "tau_start")
    ax1.set_ylabel("motion preservation", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(xs, appearance, "s-", color="tab:red", label=result.appearance_metric or "appearance (none)")
    ax2.set_ylabel(result.appearance_metric or "appearance (no score)", color="tab:red")
    tau = result.suggestion.get("tau")
    if tau is not None:
        ax1.axvline(tau, color="gray", linestyle="--")
        ax1.text(tau, ax1.get_ylim()[1], f" tau = {tau:g}", va="top", fontsize=8)
    threshold = result.suggestion.get("motion_threshold")
    if _finite(threshold):
        ax1.axhline(threshold, color="tab:blue", linestyle=":", linewidth=1)
    ax1.set_title("scores along tau_start")
    ax3 = fig.add_subplot(1, 2, 2)
    ax3.plot(motion, appearance, "o-", color="tab:purple")
    for x, y, s in zip(motion, appearance, xs):
        if np.isfinite(x) and np.isfinite(y):
            ax3.annotate(f"{s:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax3.set_xlabel("motion preservation (flow similarity)")
    ax3.set_ylabel(result.appearance_metric or "appearance (no score)")
    ax3.set_title("trade-off (labels: tau_start)")
    fig.tight_layout()
    fig.savefig(path)


def write_outputs(result: ProbeResult, output_dir: str, fps: float = 8) -> dict[str, str]:
    """Write ``probe.json``, the two heatmaps, the trade-off plot (and the videos if kept)."""
    from motiontune.utils.files import atomic_write_text

    os.makedirs(output_dir, exist_ok=True)
    files = {
        "heatmap_motion": os.path.join(output_dir, HEATMAP_MOTION),
        "heatmap_appearance": os.path.join(output_dir, HEATMAP_APPEARANCE),
        "tradeoff": os.path.join(output_dir, TRADEOFF),
    }
    _heatmap(result, "motion", "motion preservation (flow similarity)", files["heatmap_motion"])
    _heatmap(result, "appearance", f"appearance edit ({result.appearance_metric or 'no score'})", files["heatmap_appearance"])
    _tradeoff_plot(result, files["tradeoff"])
    if result.videos:
        from motiontune.data.video_io import write_video

        folder = os.path.join(output_dir, "videos")
        os.makedirs(folder, exist_ok=True)
        for name, pixels in result.videos.items():
            files[f"video_{name}"] = str(write_video(pixels[0], os.path.join(folder, f"{name}.mp4"), fps=fps))
    files["json"] = os.path.join(output_dir, JSON_NAME)
    result.files = files
    atomic_write_text(files["json"], json.dumps(result.to_dict(), indent=2))
    return files
