"""Writes TensorBoard event files with the real tensorboardX package, for
tests/import_e2e.rs and bench/import.sh. Usage: write_tensorboard.py LOGDIR STEPS
[--extras] [SUBDIR...]. In each SUBDIR (n = its position): `loss` = 10 - step/2 + n through
`add_scalar` (simple_value) and `acc` = step/4 + n as a float tensor the way TF2's
`tf.summary.scalar` writes it, at steps 0..STEPS-1 with wall time 1.7e9 + step: values
float32 holds exactly. `--extras` adds a histogram and a text per step (not scalars)."""
import sys

import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.proto.types_pb2 import DT_FLOAT

logdir, steps = sys.argv[1], int(sys.argv[2])
extras = "--extras" in sys.argv
subs = [a for a in sys.argv[3:] if not a.startswith("--")] or ["."]
for n, sub in enumerate(subs):
    w = SummaryWriter(logdir=f"{logdir}/{sub}", flush_secs=3600, max_queue=1 << 20)
    for step in range(steps):
        wall = 1.7e9 + step
        w.add_scalar("loss", 10.0 - step * 0.5 + n, step, walltime=wall)
        tensor = TensorProto(dtype=DT_FLOAT, tensor_shape=TensorShapeProto(), float_val=[step * 0.25 + n])
        acc = Summary(value=[Summary.Value(tag="acc", tensor=tensor)])
        w._get_file_writer().add_summary(acc, step, wall)
        if extras:
            w.add_histogram("weights", np.arange(10.0), step, walltime=wall)
            w.add_text("note", f"step {step}", step, walltime=wall)
    w.close()
