"""End to end on a tiny Wan2.1-architecture model with random weights, saved to a folder and
loaded back through the same code a real checkpoint takes: train a LoRA on a synthetic
reference clip from the command line, then generate with it."""

import os
import subprocess
import sys
import tempfile

import numpy as np

from motiontune.data.video_io import write_video
from motiontune.testing.tiny import build_tiny

work = tempfile.mkdtemp(prefix="motiontune-quickstart-")
model = build_tiny("wan", os.path.join(work, "tiny-wan"))
frames = np.zeros((17, 32, 32, 3), np.uint8)
for i in range(17):
    frames[i, 12:20, i : i + 8] = (220, 40, 40)
write_video(frames, os.path.join(work, "ref.mp4"))

cli = [sys.executable, "-m", "motiontune.cli"]
subprocess.run(cli + ["train", "--backbone", model, "--video", os.path.join(work, "ref.mp4"),
                      "--caption", "a red square moves right", "--steps", "30", "--rank", "4",
                      "--num-frames", "17", "--height", "32", "--width", "32", "--output", os.path.join(work, "run")], check=True)
subprocess.run(cli + ["generate", "--adapter", os.path.join(work, "run"), "--prompt", "a blue circle moves right",
                      "--steps", "10", "--format", "mp4,gif", "--output", os.path.join(work, "out")], check=True)
print(f"outputs in {os.path.join(work, 'out')}")
