"""Run by tests/test_dualreal.py under `accelerate launch --num_processes 2 --cpu`: on each rank, the
dualreal branch of the kind a step does not train (identity on motion steps, motion on identity
steps) stays bit for bit, weights and optimizer state, with gradient accumulation; the controller
trains on every step."""

import json
import sys

import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import Sample, TrainingData
from motiontune.recipes import make_recipe
from motiontune.training.trainer import Trainer, TrainConfig
from motiontune.utils.files import save_tensors

model, out = sys.argv[1], sys.argv[2]
spec = load_backbone(model)
recipe = make_recipe("dualreal", hidden=8)
videos = [Sample(torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(i)) * 2 - 1, f"clip {i}") for i in range(3)]
images = [Sample(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(10 + i)) * 2 - 1, f"photo {i}", kind="image")
          for i in range(3)]
cfg = TrainConfig(output_dir=out, steps=10, progress=False, learning_rate=1e-2, checkpoint_every=0, gradient_accumulation_steps=2)
trainer = Trainer(spec, recipe, TrainingData(videos, images), cfg)
log = []
for step in range(cfg.steps):
    _, passes, trained = trainer.step_plan(step)
    before = {b: [p.detach().clone() for p in ps] for b, ps in trainer.branches.items()}
    state = {k: [v.clone() for st in o.state.values() for v in st.values() if torch.is_tensor(v)] for k, o in trainer.optimizers.items()}
    trainer.train_step(step)
    for b, ps in trainer.branches.items():
        same = all(torch.equal(x, p.detach()) for x, p in zip(before[b], ps))
        now = [v for st in trainer.optimizers[b].state.values() for v in st.values() if torch.is_tensor(v)]
        opt_same = len(now) == len(state[b]) and all(torch.equal(x, y) for x, y in zip(state[b], now))
        log.append({"step": step, "pass": passes[0].name, "branch": b, "trained": b in trained, "weights_same": same,
                    "optimizer_same": opt_same})
rank = trainer.accelerator.process_index
save_tensors(recipe.state_dict(), f"{out}/rank{rank}.safetensors")
with open(f"{out}/log{rank}.json", "w") as fh:
    json.dump(log, fh)
print(f"rank {rank} of {trainer.world} done")
