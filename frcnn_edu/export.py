"""Export the trained detector with torch.export or to ONNX: the fixed-shape inference, which reads nothing back.

    frcnn-edu export --checkpoint runs/demo/checkpoint.pt --format onnx --out detector.onnx --height 256 --width 256

What the exported program expects and returns (PaddedDetector, model.detect_padded):
    in:  images [N, 3, H, W] float32 RGB in [0, 1], orig px, at the N, H, W given at export (the model rescales
         and normalises them inside, as in training)
    out: boxes [N, D, 4] float32 xyxy orig px, scores [N, D] float32, labels [N, D] int64 (1..L-1), valid [N, D]
         bool, sorted by decreasing score, the valid ones first (D = config.box_detections_per_img)
Both exporters trace the forward pass into a graph of fixed shapes, so they need a forward with no host read and
no shape that depends on the data. frcnn_edu's has none (fixed-size top-k, NMS as a keep mask); torchvision's
FasterRCNN has both (boolean-mask filtering, per-image NMS lists), which the exporters cannot trace
(notebook 01_from_rcnn_to_faster_rcnn shows both side by side).
Two translations are ours. ONNX has no stable sort, but its TopK breaks ties by the lower index first, which is
what a stable descending sort does, so torch.sort(stable=True) is exported as a TopK over the whole axis. And
NMS's sequential step, the frcnn_edu::settle op, becomes an ONNX Loop (ops/settle_onnx.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from .cache import cache_path
from .checkpoint import load_checkpoint, model_from_checkpoint
from .exit_status import exit_status
from .model import FasterRCNN

FORMATS = {"torch": ".pt2", "onnx": ".onnx"}


class PaddedDetector(nn.Module):
    """A FasterRCNN in eval mode as one tensor in, four tensors out: what the exporters trace."""

    def __init__(self, model: FasterRCNN):
        super().__init__()
        self.model = model
        self.eval()  # this wrapper and the detector: inference

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """images [N, 3, H, W] float in [0, 1] -> boxes [N, D, 4] orig px, scores, labels, valid [N, D]."""
        found = self.model.detect_padded(list(images.unbind(0)))
        return found.boxes, found.scores, found.labels, found.valid


def example_images(height: int, width: int, batch: int = 1) -> Tensor:
    """The example input the export traces with: its shape is the one the exported program accepts."""
    if min(height, width, batch) < 1:
        raise ValueError(f"--height, --width and --batch must be >= 1, got {height}, {width}, {batch}")
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def export_program(model: FasterRCNN, height: int, width: int, batch: int = 1) -> torch.export.ExportedProgram:
    """torch.export of PaddedDetector(model) for [batch, 3, height, width] images."""
    with torch.no_grad():
        return torch.export.export(PaddedDetector(model), (example_images(height, width, batch),), strict=False)


def _sort_as_topk(self, stable=None, dim: int = -1, descending: bool = False):
    """aten.sort.stable in ONNX: TopK over the whole axis, whose ties go to the lower index (a stable sort's order)."""
    from onnxscript import opset18 as op
    count = op.Gather(op.Shape(self), op.Constant(value_ints=[dim]))
    return op.TopK(self, count, axis=dim, largest=1 if descending else 0, sorted=1)


def export_onnx(model: FasterRCNN, path: str | Path, height: int, width: int, batch: int = 1) -> Path:
    """PaddedDetector(model) as an ONNX file (the dynamo-based exporter), inputs "images", for this input size."""
    from .ops.settle_onnx import settle_loop  # needs onnxscript: the `export` extra

    path = Path(path)
    translations = {torch.ops.aten.sort.stable: _sort_as_topk, torch.ops.frcnn_edu.settle.default: settle_loop}
    with torch.no_grad():
        program = torch.onnx.export(PaddedDetector(model), (example_images(height, width, batch),), dynamo=True,
                                    input_names=["images"], output_names=["boxes", "scores", "labels", "valid"],
                                    custom_translation_table=translations,
                                    verbose=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


def parser(prog: str = "python -m frcnn_edu.export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a run's checkpoint.pt (frcnn-edu train --out RUN)")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx", help="onnx (default) or torch (.pt2)")
    p.add_argument("--out", help=f"the file to write (default: {cache_path('export')}/detector.onnx or .pt2)")
    p.add_argument("--height", type=int, default=256, help="the input images' height in px (default 256)")
    p.add_argument("--width", type=int, default=256, help="the input images' width in px (default 256)")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    return p


def command(args: argparse.Namespace) -> None:
    """`frcnn-edu export`: writes the file and says what it takes and returns."""
    example_images(args.height, args.width, args.batch)  # checks the sizes before the model is loaded
    model = model_from_checkpoint(load_checkpoint(args.checkpoint))
    out = Path(args.out) if args.out else cache_path("export") / f"detector{FORMATS[args.format]}"
    if args.format == "onnx":
        export_onnx(model, out, args.height, args.width, args.batch)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(export_program(model, args.height, args.width, args.batch), str(out))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): images [{args.batch}, 3, {args.height}, {args.width}] "
          f"float in [0, 1] -> boxes [{args.batch}, D, 4] xyxy px, scores, labels, valid [{args.batch}, D]")


if __name__ == "__main__":
    sys.exit(exit_status(command, parser().parse_args()))
