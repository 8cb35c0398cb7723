"""Data-parallel training through `accelerate launch` on CPU (gloo): both ranks end identical."""

import os
import subprocess
import sys

import torch

from motiontune.utils.files import load_tensors

HERE = os.path.dirname(__file__)


def test_two_process_data_parallel_ranks_agree(tiny_model_dir, tmp_path):
    model = tiny_model_dir("wan")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29533"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           os.path.join(HERE, "scripts", "ddp_train.py"), model, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "of 2 done" in proc.stdout
    a = load_tensors(str(tmp_path / "rank0.safetensors"))
    b = load_tensors(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
