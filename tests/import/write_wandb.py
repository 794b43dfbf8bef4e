"""Writes one W&B offline run with the real wandb package (the seed's loop), for
tests/import_e2e.rs and bench/import.sh. Usage: write_wandb.py OUT_DIR STEPS [--media]
[--stats]. Prints a JSON line: the run id, its folder and the wall-clock bounds."""
import json
import os
import sys
import time

out, steps = sys.argv[1], int(sys.argv[2])
media, stats = "--media" in sys.argv, "--stats" in sys.argv
os.makedirs(out, exist_ok=True)
os.chdir(out)
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["WANDB_DIR"] = out

import numpy as np  # noqa: E402
import wandb  # noqa: E402

started = time.time()
settings = wandb.Settings(x_stats_sampling_interval=0.1 if stats else 3600.0)
run = wandb.init(
    mode="offline",
    project="seed",
    name="seed-run",
    config={"lr": 0.01, "layers": [1, 2], "opt": {"name": "adam"}},
    settings=settings,
)
for i in range(steps):
    wandb.log({"metric": i, "loss": 10 - i})
if media:
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    wandb.log({"sample": wandb.Image(pixels)})
run.summary["best"] = 3
log_file = os.path.join(os.path.dirname(run.dir), f"run-{run.id}.wandb")
if stats:
    # wandb-core samples system metrics on its own thread: wait for one on disk.
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(log_file, "rb") as f:
            if b"proc.memory.rssMB" in f.read():
                break
        time.sleep(0.05)
    else:
        sys.exit("no system-metrics sample reached the .wandb file within 60 s")
run.finish()
print(json.dumps({"id": run.id, "file": log_file, "files": run.dir, "started": started, "ended": time.time()}))
