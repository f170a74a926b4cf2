"""A tiny ONNX model with ArcFace's input and output shapes, built by the tests (no weights are downloaded).

Input `input.1` [N, 3, 112, 112] → 7×7 average pool → [N, 3, 16, 16] → the first 512 values (the red and green
planes, 256 each) as the [N, 512] "embedding". So its output is a picture of the aligned chip the pack fed
it, which lets a test check the alignment, normalisation and channel order from outside.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_arcface(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    select = np.zeros((768, 512), np.float32)
    select[np.arange(512), np.arange(512)] = 1.0
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[7, 7], strides=[7, 7]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "select"], ["683"])],
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])],
        [numpy_helper.from_array(select, "select")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def expected_output(chip: np.ndarray) -> np.ndarray:
    """What the tiny model returns for a 112×112×3 uint8 RGB chip, normalised as ArcFace's input is."""
    x = (chip.astype(np.float32) - 127.5) / 127.5
    pooled = x.reshape(16, 7, 16, 7, 3).mean(axis=(1, 3))          # [16, 16, 3]
    return np.concatenate([pooled[..., 0].ravel(), pooled[..., 1].ravel()])
