"""Loading reference videos and images and preparing them as backbone inputs."""

from motiontune.data.frames import (
    as_frame_rule,
    check_frame_count,
    describe_frame_rule,
    frame_count_rule,
    nearest_valid_frame_count,
    prepare_image,
    prepare_video,
    resize_and_crop,
    sample_frames,
    sample_indices,
    valid_frame_count,
)
from motiontune.data.video_io import (
    VideoClip,
    read_image,
    read_video,
    to_uint8_frames,
    to_uint8_image,
    write_frames,
    write_image,
    write_video,
)

__all__ = [
    "VideoClip",
    "as_frame_rule",
    "check_frame_count",
    "describe_frame_rule",
    "frame_count_rule",
    "nearest_valid_frame_count",
    "prepare_image",
    "prepare_video",
    "read_image",
    "read_video",
    "resize_and_crop",
    "sample_frames",
    "sample_indices",
    "to_uint8_frames",
    "to_uint8_image",
    "valid_frame_count",
    "write_frames",
    "write_image",
    "write_video",
]
