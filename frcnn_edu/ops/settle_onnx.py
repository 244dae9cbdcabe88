"""frcnn_edu::settle in ONNX: the fixed point of ops/settle.py as an ONNX Loop, for frcnn_edu.export.

ONNX has no operator for a sequential scan, but its Loop repeats a body until a condition, inside the runtime:
x <- max(alive - x @ S, 0) until a step changes nothing. That is the fixed-point kernel of ops/settle.py, exact for
any input (its facts a and b), and it reads nothing back to the caller. Imported only by the ONNX export, which
needs onnxscript (the `export` extra).
"""
from __future__ import annotations

import onnxscript
from onnxscript import FLOAT
from onnxscript import opset18 as op


@onnxscript.script(default_opset=op)
def settle_loop(suppress: FLOAT, alive: FLOAT) -> FLOAT:
    """suppress [B, W, W] and alive [B, 1, W], float 0/1 -> keep [B, 1, W] float 0/1 (as frcnn_edu::settle)."""
    keep = alive
    changed = op.Constant(value=True)
    while changed:
        step = op.Relu(op.Sub(alive, op.MatMul(keep, suppress)))
        changed = op.ReduceMax(op.Abs(op.Sub(step, keep)), keepdims=0) > op.Constant(value_float=0.0)
        keep = step
    return keep
