"""Exact toy-world metrics, computed from what the oracle reads in the videos.

Every function takes a video as a uint8 (F, H, W, 3) array or as an already computed
:class:`~motiontune.toyworld.oracle.VideoAnalysis` (to analyse a video once for several
metrics), and a prompt as a caption string, :class:`CaptionFields` or :class:`SceneSpec`.

Motion vectors. From the oracle's centroids c_i (normalised (x, y)) and areas a_i (fraction of
the frame), frame step i of a video has the motion vector

    m_i = (c_{i+1} - c_i, lambda * (l_{i+1} - l_i)),   l_i = log(sqrt(a_i)),  lambda = sqrt(mean a)

i.e. the centroid displacement plus the change of the subject's linear size, expressed as the
distance its size changes by (so growing and shrinking count as motion). Units are frame
widths/heights per frame step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motiontune.errors import ConfigError, InputError
from motiontune.toyworld.motions import BASE_MOTIONS, MOTIONS
from motiontune.toyworld.oracle import VideoAnalysis, analyze
from motiontune.toyworld.world import CaptionFields, SceneSpec, as_fields

Video = np.ndarray | VideoAnalysis
Prompt = str | CaptionFields | SceneSpec

# Motion-vector length (normalised units per frame step; 0.16 px at 32x32) below which a step
# counts as still: it regularises the cosine so that two still steps agree.
STILL_STEP = 0.005
# Centred-position scale (normalised units) playing the same role for trajectory_correlation.
STILL_POSITION = 0.01


def as_analysis(video: Video) -> VideoAnalysis:
    """The oracle's analysis of ``video`` (returned unchanged if it already is one)."""
    return video if isinstance(video, VideoAnalysis) else analyze(video)


def motion_vectors(video: Video, num_points: int | None = None) -> np.ndarray:
    """Motion vectors (N - 1, 3) of a video, resampled to ``num_points`` frames if given.

    Frames where the subject was lost are interpolated. Raises InputError if no subject is found.
    """
    analysis = as_analysis(video)
    centers, areas = analysis.filled_trajectory()
    log_size = 0.5 * np.log(np.maximum(areas, 1e-8))
    track = np.concatenate([centers, (np.sqrt(areas.mean()) * log_size)[:, None]], axis=1)
    if num_points is not None and num_points != len(track):
        if num_points < 2:
            raise InputError(f"need at least two frames to measure motion, got {num_points}")
        source = np.linspace(0.0, 1.0, len(track))
        target = np.linspace(0.0, 1.0, num_points)
        track = np.stack([np.interp(target, source, track[:, k]) for k in range(3)], axis=1)
    return np.diff(track, axis=0)


def _regularised_cosine(a: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """Row-wise cosine of (a, eps) and (b, eps): the cosine for long vectors, 1 for two zeros."""
    dot = np.sum(a * b, axis=-1) + eps * eps
    return dot / np.sqrt((np.sum(a * a, axis=-1) + eps * eps) * (np.sum(b * b, axis=-1) + eps * eps))


def _reference_analysis(reference: Video) -> VideoAnalysis:
    analysis = as_analysis(reference)
    if not analysis.found:
        raise InputError("no subject was found in the reference video")
    if len(analysis.found_frames) < 2:
        raise InputError("the reference video needs at least two frames")
    return analysis


def motion_fidelity(video: Video, reference: Video) -> float:
    """Frame-by-frame agreement of the motion vectors of ``video`` and ``reference``, in [-1, 1].

    Both are resampled to the reference's frame count; per step, the cosine of the motion
    vectors each extended by a constant STILL_STEP (so two still steps score 1, a still and a
    moving step about 0, opposite moves -1) is averaged with weights
    sqrt(|m_ref|^2 + STILL_STEP^2), i.e. steps where the reference moves more count more.
    1 for a video against itself or the same motion with another subject or background,
    about 0 for unrelated motions, -1 for the reverse motion; 0 if ``video`` shows no subject.
    """
    ref = _reference_analysis(reference)
    gen = as_analysis(video)
    if not gen.found:
        return 0.0
    steps = len(ref.found_frames)
    ref_vectors = motion_vectors(ref, steps)
    gen_vectors = motion_vectors(gen, steps)
    cosine = _regularised_cosine(gen_vectors, ref_vectors, STILL_STEP)
    weight = np.sqrt(np.sum(ref_vectors**2, axis=-1) + STILL_STEP**2)
    return float(np.sum(weight * cosine) / np.sum(weight))


def trajectory_correlation(video: Video, reference: Video) -> float:
    """Uncentred correlation of the mean-subtracted (x, y, lambda log size) tracks, in [-1, 1].

    Invariant to where the motion happens and to its scale; each track is extended by a
    constant STILL_POSITION per frame so two still videos score 1. 0 if ``video`` shows no subject.
    """
    ref = _reference_analysis(reference)
    gen = as_analysis(video)
    if not gen.found:
        return 0.0
    steps = len(ref.found_frames)
    tracks = []
    for vectors in (motion_vectors(gen, steps), motion_vectors(ref, steps)):
        track = np.concatenate([np.zeros((1, 3)), np.cumsum(vectors, axis=0)])
        tracks.append((track - track.mean(axis=0)).ravel())
    gen_track, ref_track = tracks
    eps2 = steps * STILL_POSITION**2
    dot = float(gen_track @ ref_track) + eps2
    return dot / float(np.sqrt((gen_track @ gen_track + eps2) * (ref_track @ ref_track + eps2)))


def dynamics(video: Video) -> float:
    """Mean motion-vector length (frame widths per frame step, size change included); 0 if no subject."""
    analysis = as_analysis(video)
    if not analysis.found or len(analysis.found_frames) < 2:
        return 0.0
    return float(np.linalg.norm(motion_vectors(analysis), axis=-1).mean())


@dataclass(frozen=True)
class SubjectMatch:
    """Whether the subject's colour and shape in a video are those of the prompt."""

    color_match: bool
    shape_match: bool

    @property
    def accuracy(self) -> float:
        return float(self.color_match and self.shape_match)


def subject_match(video: Video, prompt: Prompt) -> SubjectMatch:
    """Colour and shape of the video's subject compared with the prompt's."""
    analysis, fields = as_analysis(video), as_fields(prompt)
    return SubjectMatch(analysis.color == fields.color, analysis.shape == fields.shape)


def subject_accuracy(video: Video, prompt: Prompt) -> float:
    """1.0 if both the subject's colour and shape are the prompt's, else 0.0."""
    return subject_match(video, prompt).accuracy


def background_accuracy(video: Video, prompt: Prompt) -> float:
    """1.0 if the background is the prompt's, else 0.0."""
    return float(as_analysis(video).background == as_fields(prompt).background)


def motion_direction_accuracy(video: Video, prompt: Prompt) -> float:
    """1.0 if the oracle's base-motion class is the prompt's motion; the prompt must ask for a base motion."""
    fields = as_fields(prompt)
    if fields.motion not in BASE_MOTIONS:
        raise ConfigError(
            f"motion direction accuracy needs a base motion ({', '.join(BASE_MOTIONS)}), got {fields.motion!r}"
        )
    return float(as_analysis(video).motion == fields.motion)


def motion_accuracy(video: Video, prompt: Prompt, candidates: tuple[str, ...] = MOTIONS) -> float:
    """1.0 if the prompt's motion is the one of ``candidates`` that best fits the video's trajectory.

    Works for held-out motions too; independent of phase, speed, amplitude and position.
    0.0 if the video shows no subject.
    """
    fields = as_fields(prompt)
    if fields.motion not in candidates:
        raise ConfigError(f"the prompt's motion {fields.motion!r} is not among the candidates {candidates}")
    analysis = as_analysis(video)
    if not analysis.found or len(analysis.found_frames) < 2:
        return 0.0
    return float(analysis.fit_motion(candidates).motion == fields.motion)


def _appearance(source: Video | Prompt) -> dict[str, str | None]:
    if isinstance(source, (str, CaptionFields, SceneSpec)):
        fields = as_fields(source)
        return {"color": fields.color, "shape": fields.shape, "background": fields.background}
    analysis = as_analysis(source)
    return {"color": analysis.color, "shape": analysis.shape, "background": analysis.background}


def appearance_leakage(video: Video, prompt: Prompt, reference: Video | Prompt) -> float:
    """Share of the reference's appearance attributes that show up where the prompt asked for others.

    Over the attributes (colour, shape, background) where the prompt differs from the reference,
    the fraction the video shows with the reference's value: 0 = no leakage, 1 = every such
    attribute copied. 0 when the prompt asks for the reference's appearance everywhere. The
    reference is a video (read by the oracle) or its caption / fields / scene.
    """
    wanted = _appearance(as_fields(prompt))
    source = _appearance(reference)
    shown = _appearance(video)
    differing = [key for key in wanted if source[key] is not None and wanted[key] != source[key]]
    if not differing:
        return 0.0
    return sum(shown[key] == source[key] for key in differing) / len(differing)


def score_video(video: Video, prompt: Prompt, reference: Video | None = None) -> dict[str, float]:
    """All toy-world metrics of one generated video.

    Keys: found, color_match, shape_match, subject_accuracy, background_accuracy, dynamics,
    motion_accuracy;
    motion_direction_accuracy when the prompt's motion is a base motion; and, with a reference
    video, motion_fidelity, trajectory_correlation and appearance_leakage.
    """
    analysis = as_analysis(video)
    fields = as_fields(prompt)
    match = subject_match(analysis, fields)
    scores = {
        "found": float(analysis.found),
        "color_match": float(match.color_match),
        "shape_match": float(match.shape_match),
        "subject_accuracy": match.accuracy,
        "background_accuracy": background_accuracy(analysis, fields),
        "dynamics": dynamics(analysis),
        "motion_accuracy": motion_accuracy(analysis, fields),
    }
    if fields.motion in BASE_MOTIONS:
        scores["motion_direction_accuracy"] = motion_direction_accuracy(analysis, fields)
    if reference is not None:
        ref = as_analysis(reference)
        scores["motion_fidelity"] = motion_fidelity(analysis, ref)
        scores["trajectory_correlation"] = trajectory_correlation(analysis, ref)
        scores["appearance_leakage"] = appearance_leakage(analysis, fields, ref)
    return scores
