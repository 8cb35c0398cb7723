"""Video metrics, their registry, and evaluation helpers."""

from motiontune.evaluation.metrics import (
    DynamicDegree,
    as_uint8_video,
    dynamic_degree,
    flow_similarity,
    motion_fidelity,
    motion_smoothness,
    temporal_flickering,
)
from motiontune.evaluation.registry import METRICS, MetricInfo, compute_metrics, register_metric

__all__ = [
    "METRICS",
    "DynamicDegree",
    "MetricInfo",
    "as_uint8_video",
    "compute_metrics",
    "dynamic_degree",
    "flow_similarity",
    "motion_fidelity",
    "motion_smoothness",
    "register_metric",
    "temporal_flickering",
]
