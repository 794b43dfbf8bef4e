#!/usr/bin/env python3
"""Writes www/models/stripes.onnx, the small model of the onnxruntime-web demo (www/onnx.html).

A softmax classifier of 8x8 grey images into three classes (horizontal, vertical, diagonal
stripes), trained here with numpy on generated images, exported with the `onnx` package:
input "image" float32 [batch, 1, 8, 8] -> Flatten -> Gemm(64x16) -> Relu -> Gemm(16x3) ->
Softmax -> output "probs" [batch, 3]. Deterministic (fixed seed): the same bytes every run.

The .onnx file (a few KB) is committed; rerun this after changing it:
    python3 -m venv "${CARGO_TARGET_DIR:-target}/onnx-venv"
    "${CARGO_TARGET_DIR:-target}/onnx-venv/bin/pip" install onnx
    "${CARGO_TARGET_DIR:-target}/onnx-venv/bin/python" scripts/make-onnx-model.py
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 8
CLASSES = ["horizontal", "vertical", "diagonal"]
OUT = pathlib.Path(__file__).resolve().parent.parent / "www" / "models" / "stripes.onnx"


def stripes(cls, phase, period, noise, rng):
    """One image of class `cls`, as the demo page generates them (www/onnx.js `stripes`)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    coord = [y, x, x + y][cls]
    img = ((coord + phase) % period < period / 2).astype(np.float32)
    return np.clip(img + noise * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


def dataset(n, rng):
    labels = rng.integers(0, len(CLASSES), n)
    images = np.stack([stripes(c, rng.integers(0, 4), rng.choice([2, 4]), 0.2, rng) for c in labels])
    return images.reshape(n, SIZE * SIZE), labels


def train(rng):
    x, y = dataset(3000, rng)
    w1 = (rng.standard_normal((SIZE * SIZE, 16)) * 0.1).astype(np.float32)
    b1 = np.zeros(16, np.float32)
    w2 = (rng.standard_normal((16, len(CLASSES))) * 0.1).astype(np.float32)
    b2 = np.zeros(len(CLASSES), np.float32)
    onehot = np.eye(len(CLASSES), dtype=np.float32)[y]
    for _ in range(600):
        h = np.maximum(x @ w1 + b1, 0)
        z = h @ w2 + b2
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        dz = (p - onehot) / len(x)
        dh = (dz @ w2.T) * (h > 0)
        w2 -= 0.5 * h.T @ dz
        b2 -= 0.5 * dz.sum(0)
        w1 -= 0.5 * x.T @ dh
        b1 -= 0.5 * dh.sum(0)
    acc = (np.argmax(np.maximum(x @ w1 + b1, 0) @ w2 + b2, 1) == y).mean()
    return (w1, b1, w2, b2), acc


def export(params):
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in zip(params, ["w1", "b1", "w2", "b2"])]
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["act"]),
        helper.make_node("Gemm", ["act", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "stripes",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tidelog")
    model.ir_version = 8
    model.metadata_props.append(onnx.StringStringEntryProto(key="classes", value=",".join(CLASSES)))
    onnx.checker.check_model(model)
    return model


def main():
    params, acc = train(np.random.default_rng(7))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(export(params), OUT)
    print(f"{OUT}: {OUT.stat().st_size} bytes, training accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
