"""Run by tests/test_distributed.py under `accelerate launch --num_processes 2 --cpu`."""

import sys

import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import Sample, TrainingData
from motiontune.recipes import make_recipe
from motiontune.training.trainer import Trainer, TrainConfig
from motiontune.utils.files import save_tensors

model, out = sys.argv[1], sys.argv[2]
spec = load_backbone(model)
recipe = make_recipe("lora", rank=4, alpha=4, attention=("joint",))
videos = [Sample(torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(i)) * 2 - 1, f"clip {i}") for i in range(4)]
trainer = Trainer(spec, recipe, TrainingData(videos), TrainConfig(output_dir=out, steps=4, progress=False, learning_rate=1e-2, checkpoint_every=0))
trainer.train()
rank = trainer.accelerator.process_index
save_tensors(recipe.state_dict(), f"{out}/rank{rank}.safetensors")
print(f"rank {rank} of {trainer.world} done")
