"""Training and evaluation: the loop, checkpoints that survive interruption, VOC mAP, pictures of the run.

    frcnn-edu train --data builtin --out runs/demo --time-budget 300    # or: python -m frcnn_edu.train ...
    frcnn-edu train --data voc --root data/VOCdevkit --image-set catdog_trainval --backbone vgg16 ...

The paper's optimiser (Fast §2.3 / FRCNN §3.1.3): SGD, momentum 0.9, weight decay 5e-4; here with a linear
warm-up and a cosine decay over `--iterations` (FRCNN steps the rate down once, by 10x, after 60k of 80k
mini-batches; a cosine does the same job smoothly on short runs). Augmentation: the papers' horizontal flips,
plus zoom crops (`--zoom`, augment.zoom_crop), without which the tiny backbone memorises the 500 built-in images.
Everything random is drawn from the seed: the data order, flips and crops per epoch from (seed, epoch), the
model's anchor and RoI sampling from torch's RNG, whose state the checkpoint keeps, so `--resume` continues
exactly where an interrupted run stopped.
Run folder (--out; default: a folder under the per-user cache, cache.py): checkpoint.pt (written atomically each
epoch, at the end and on Ctrl-C), losses.csv (one row per iteration), metrics.json, losses.png, detections.png.
The built-in dataset is generated into --root (default: the cache's builtin/). Notebook: 06_fast_rcnn_head.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .augment import hflip, zoom_crop
from .builtin_dataset import BUILTIN_CLASSES, make_builtin_dataset
from .builtin_dataset import VERSION as BUILTIN_VERSION
from .cache import cache_path
from .checkpoint import load_checkpoint, save_atomic
from .config import FasterRCNNConfig
from .metrics import voc_map
from .model import FasterRCNN
from .voc import VOC_CLASSES, VOCDataset, load_image

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


@dataclass
class TrainArgs:
    """Command-line options; the defaults are the demo's (tiny backbone, built-in dataset, CPU)."""

    data: str = "builtin"  # "builtin" or "voc"
    root: str = ""  # builtin: where to generate it (default: the cache's builtin/); voc: a VOCdevkit folder
    year: str = ""  # VOC year folder ("2007", "2012"); builtin: "builtin"
    image_set: str = "trainval"
    test_set: str = "test"
    classes: tuple[str, ...] = ()  # default: the dataset's own class list
    backbone: str = "tiny"
    pretrained: bool = False
    iterations: int = 3000
    batch_size: int = 4
    lr: float = 0.04  # with batch norm in the tiny backbone; 0.02 learned slower on the built-in dataset
    momentum: float = 0.9  # Fast §2.3
    weight_decay: float = 5e-4  # Fast §2.3 / FRCNN §3.1.3
    warmup: int = 100
    flip: bool = True  # Fast §2.3 / FRCNN §3.3: horizontal flips, the only augmentation
    zoom: float = 0.5  # probability of a zoom crop (augment.zoom_crop; not in the papers), 0 = flips only
    amp: bool = True  # bfloat16 autocast for convolutions and FC layers (~1.5x on a CPU); boxes stay float32
    seed: int = 0
    time_budget: float = 0.0  # seconds of training, 0 = no limit
    device: str = "cpu"
    out: str = ""  # the run folder (default: the cache's runs/train)
    resume: bool = False
    eval_images: int = 0  # evaluate on the first N test images (0 = all)
    config: dict = field(default_factory=dict)  # FasterRCNNConfig overrides


def class_names(args: TrainArgs) -> tuple[str, ...]:
    return tuple(args.classes) or (BUILTIN_CLASSES if args.data == "builtin" else VOC_CLASSES)


def load_split(args: TrainArgs, image_set: str) -> VOCDataset:
    """The dataset of one image set, generating the built-in one on first use."""
    if args.data == "builtin":
        voc_root, year = make_builtin_dataset(args.root or None, seed=0), args.year or "builtin"
    elif args.data == "voc":
        voc_root, year = Path(args.root or cache_path("voc", "VOCdevkit")), args.year or "2007"
        if not voc_root.is_dir():
            raise FileNotFoundError(f"--root {voc_root} is not a folder; it must be a VOCdevkit folder "
                                    f"(frcnn-edu download voc2007 --root data, then --root data/VOCdevkit)")
    else:
        raise ValueError(f"--data must be 'builtin' or 'voc', got {args.data!r}")
    # --classes cat,dog picks a subset of the dataset's classes: objects of the others are left out
    dataset = VOCDataset(voc_root, year=year, image_set=image_set, classes=class_names(args),
                         skip_other_classes=bool(args.classes))
    if len(dataset) == 0:
        raise ValueError(f"image set {image_set!r} in {voc_root} is empty")
    if not any(len(a["labels"]) for a in dataset.annotations):
        raise ValueError(f"image set {image_set!r} in {voc_root} has no object of class "
                         f"{', '.join(class_names(args))}; check --classes")
    return dataset


class InMemory:
    """A dataset's images (uint8, to save memory) and annotations, decoded once: epochs then cost no I/O."""

    def __init__(self, dataset: VOCDataset):
        self.images = [(load_image(dataset.image_path(i)) * 255).round().to(torch.uint8) for i in dataset.ids]
        self.targets = [dataset.annotations[i] for i in range(len(dataset))]
        self.folder = dataset.year_dir

    def __len__(self) -> int:
        return len(self.images)

    def get(self, index: int, flip: bool, device: torch.device, zoom: Tensor | None = None) -> tuple[Tensor, dict]:
        """Image `index` as float [3, H, W] in [0, 1] and its target, flipped and zoom-cropped (zoom: augment.zoom_crop's
        draw, or None) on the CPU, then moved to device."""
        image, target = self.images[index], self.targets[index]
        target = dict(boxes=target["boxes"], labels=target["labels"])
        if zoom is not None:
            image, target = zoom_crop(image, target, zoom)
        image = image.float().div_(255)
        if flip:
            image, target = hflip(image, target)
        return image.to(device), {k: v.to(device) for k, v in target.items()}


@dataclass
class EpochPlan:
    """One epoch's batches (lists of image indices) and per-image augmentation, drawn from (seed, epoch) alone,
    so a resumed run redraws the same. flips: [I] bool. zooms: [I, 3] zoom_crop draws, rows of NaN for none."""

    batches: list[list[int]]
    flips: Tensor
    zooms: Tensor

    def augment(self, index: int) -> tuple[bool, Tensor | None]:
        return bool(self.flips[index]), None if self.zooms[index].isnan().any() else self.zooms[index]


def epoch_plan(num_images: int, batch_size: int, seed: int, epoch: int, flip: bool, zoom: float = 0.0) -> EpochPlan:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_images, generator=generator)
    flips = (torch.rand(num_images, generator=generator) < 0.5) & flip
    zooms = torch.rand(num_images, 3, generator=generator)
    zooms[torch.rand(num_images, generator=generator) >= zoom] = float("nan")
    batches = [order[i : i + batch_size].tolist() for i in range(0, num_images - batch_size + 1, batch_size)]
    return EpochPlan(batches, flips, zooms)


def learning_rate(args: TrainArgs, iteration: int, seconds: float = 0.0) -> float:
    """Linear warm-up from lr/10, then a cosine decay to lr/100 at the end of training.

    The end is the last iteration or, with a time budget, the end of the budget if that comes first: progress
    is the larger of the two fractions, so a run cut short by the clock has still annealed its rate.
    """
    if iteration < args.warmup:
        return args.lr * (0.1 + 0.9 * iteration / args.warmup)
    progress = (iteration - args.warmup) / max(1, args.iterations - args.warmup)
    if args.time_budget:
        progress = max(progress, seconds / args.time_budget)
    return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def run_folder(args: TrainArgs) -> Path:
    """--out, or the cache's runs/train when none was given."""
    return Path(args.out) if args.out else cache_path("runs", "train")


class Trainer:
    """The training loop with progress, logging, checkpoints, resume and a time budget."""

    def __init__(self, args: TrainArgs, model: FasterRCNN, data: InMemory):
        self.args, self.model, self.data = args, model, data
        self.device = torch.device(args.device)
        self.out = run_folder(args)
        self.out.mkdir(parents=True, exist_ok=True)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        self.iteration, self.train_seconds = 0, 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def recipe(self) -> dict:
        """What determines the weights apart from the model config: the optimisation and data options."""
        skip = ("out", "root", "resume", "time_budget", "device", "eval_images")
        recipe = {k: v for k, v in asdict(self.args).items() if k not in skip}
        if self.args.data == "builtin":  # a new version of the generator draws other images
            recipe["builtin_version"] = BUILTIN_VERSION
        return recipe

    def state(self) -> dict:
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), iteration=self.iteration,
                    train_seconds=self.train_seconds, rng=torch.get_rng_state(), recipe=self.recipe(),
                    config=asdict(self.model.config), num_classes=self.model.num_classes,
                    backbone=self.args.backbone, classes=list(class_names(self.args)))

    def save(self) -> None:
        save_atomic(self.state(), self.checkpoint_path)

    def load(self) -> None:
        """Continue from checkpoint.pt; refuse one made with another model configuration."""
        if not self.checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
        state = load_checkpoint(self.checkpoint_path, self.device)
        mine = dict(config=asdict(self.model.config), num_classes=self.model.num_classes, backbone=self.args.backbone,
                    classes=list(class_names(self.args)))
        for key, value in mine.items():
            if state[key] != value:
                raise ValueError(f"{self.checkpoint_path} comes from another configuration: {key} is "
                                 f"{state[key]!r} there, {value!r} here")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.train_seconds = state["iteration"], state["train_seconds"]
        torch.set_rng_state(state["rng"])

    def step(self, batch: list[int], plan: EpochPlan) -> dict[str, float]:
        self.lr = learning_rate(self.args, self.iteration, self.train_seconds)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        images, targets = zip(*(self.data.get(i, flip, self.device, zoom)
                                for i, (flip, zoom) in zip(batch, map(plan.augment, batch))))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.amp):
            losses = self.model(list(images), list(targets))
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.iteration += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def fit(self, stop_after: int | None = None) -> None:
        """Train up to args.iterations (or `stop_after` more iterations, for tests), within the time budget."""
        args, model = self.args, self.model
        model.train()
        per_epoch = len(self.data) // args.batch_size
        last = args.iterations if stop_after is None else min(args.iterations, self.iteration + stop_after)
        log = self._open_log()
        bar = tqdm(total=args.iterations, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                   disable=None)
        started, running = time.perf_counter() - self.train_seconds, None
        try:
            while self.iteration < last:
                epoch, position = divmod(self.iteration, per_epoch)
                plan = epoch_plan(len(self.data), args.batch_size, args.seed, epoch, args.flip, args.zoom)
                for batch in plan.batches[position:]:
                    losses = self.step(batch, plan)
                    self.train_seconds = time.perf_counter() - started
                    log.writerow([self.iteration, f"{self.train_seconds:.2f}", f"{self.lr:.6f}"]
                                 + [f"{losses[k]:.5f}" for k in LOSS_NAMES])
                    running = losses if running is None else {k: 0.9 * running[k] + 0.1 * losses[k] for k in losses}
                    bar.update(1)
                    bar.set_postfix(loss=f"{sum(running.values()):.3f}", cls=f"{running['loss_classifier']:.3f}")
                    if self.iteration >= last or (args.time_budget and self.train_seconds >= args.time_budget):
                        break
                self.save()  # each epoch (and at the end)
                if args.time_budget and self.train_seconds >= args.time_budget:
                    tqdm.write(f"time budget of {args.time_budget:.0f} s reached at iteration {self.iteration}")
                    break
        except KeyboardInterrupt:
            self.save()
            tqdm.write(f"interrupted: checkpoint saved at iteration {self.iteration} in {self.checkpoint_path}; "
                       f"continue with --resume")
            raise
        finally:
            bar.close()
            log.close()

    def _open_log(self):
        """losses.csv, with the rows after the resumed iteration dropped, so it matches the weights."""
        path = self.out / "losses.csv"
        rows = []
        if self.iteration and path.exists():
            with open(path) as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if int(r[0]) <= self.iteration]
        f = open(path, "w", newline="")
        writer = csv.writer(f)
        writer.writerow(["iteration", "seconds", "lr", *LOSS_NAMES])
        writer.writerows(rows)

        class Log:  # a csv writer that also closes its file
            writerow = staticmethod(lambda row: (writer.writerow(row), f.flush()))
            close = staticmethod(f.close)

        return Log()


@torch.no_grad()
def predict(model: FasterRCNN, data: InMemory, device: torch.device, batch_size: int = 8,
            limit: int = 0) -> list[dict]:
    """Detections (orig px, on the CPU) for the first `limit` images of `data` (all when 0)."""
    model.eval()
    count = len(data) if not limit else min(limit, len(data))
    results = []
    for start in tqdm(range(0, count, batch_size), desc="eval", unit="batch", disable=None):
        images = [data.get(i, False, device)[0] for i in range(start, min(start + batch_size, count))]
        results += [{k: v.cpu() for k, v in r.items()} for r in model(images)]
    return results


def evaluate(model: FasterRCNN, data: InMemory, device: torch.device, names: tuple[str, ...],
             limit: int = 0) -> tuple[dict, list[dict]]:
    """VOC07 11-point mAP@0.5 (and the VOC2010+ area) on `data`; also returns the detections."""
    detections = predict(model, data, device, limit=limit)
    truths = data.targets[: len(detections)]
    voc07, area = voc_map(detections, truths, use_07_metric=True), voc_map(detections, truths, use_07_metric=False)
    metrics = dict(map=voc07["map"], map_area=area["map"],
                   ap={names[c - 1]: voc07["ap"][c] for c in sorted(voc07["ap"])}, test_images=len(detections))
    return metrics, detections


def build_model(args: TrainArgs, num_classes: int) -> FasterRCNN:
    base = FasterRCNNConfig.tiny_cpu() if args.backbone == "tiny" else FasterRCNNConfig.paper_vgg16()
    config = base.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.config.items()})
    return FasterRCNN(num_classes, args.backbone, config, pretrained=args.pretrained)


def run(args: TrainArgs) -> dict:
    """Train, evaluate on the test split, and write metrics.json, losses.png and detections.png into args.out."""
    from . import viz

    torch.manual_seed(args.seed)
    names = class_names(args)
    train_data = InMemory(load_split(args, args.image_set))
    test_data = InMemory(load_split(args, args.test_set))
    model = build_model(args, len(names) + 1).to(args.device)
    trainer = Trainer(args, model, train_data)
    tqdm.write(f"images from {train_data.folder}; run folder {trainer.out}", file=sys.stderr)  # where it all goes
    if args.resume:
        trainer.load()
    trainer.fit()
    metrics, detections = evaluate(model, test_data, trainer.device, names, args.eval_images)
    metrics.update(train_seconds=round(trainer.train_seconds, 1), iterations=trainer.iteration,
                   train_images=len(train_data), backbone=args.backbone, device=args.device)
    out = trainer.out
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    viz.plot_loss_curves(out / "losses.csv", out / "losses.png")
    viz.plot_detection_grid(test_data, detections, names, out / "detections.png")
    return metrics


HELP = {"root": f"builtin: where to generate it (default: {cache_path('builtin')}); voc: a VOCdevkit folder",
        "out": f"the run folder (default: {cache_path('runs', 'train')})"}


def parser(prog: str = "python -m frcnn_edu.train") -> argparse.ArgumentParser:
    """One flag per TrainArgs field, with its default."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    for name, value in asdict(TrainArgs()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif name == "classes":
            p.add_argument(flag, default="", help="comma-separated class names (default: the dataset's)")
        elif name == "config":
            p.add_argument(flag, default="{}", help='FasterRCNNConfig overrides as JSON, e.g. \'{"min_size": 400}\'')
        else:
            p.add_argument(flag, type=type(value), default=value, help=HELP.get(name))
    return p


def train_args(ns: argparse.Namespace) -> TrainArgs:
    """The parsed flags as TrainArgs; ValueError naming --config when it is not a JSON object."""
    fields = TrainArgs.__dataclass_fields__
    options = {k: v for k, v in vars(ns).items() if k in fields}  # `frcnn-edu train` adds its `command`
    options["classes"] = tuple(c for c in options["classes"].split(",") if c)
    try:
        options["config"] = json.loads(options["config"])
    except json.JSONDecodeError as error:
        raise ValueError(f"--config must be a JSON object, got {options['config']!r} ({error})") from None
    if not isinstance(options["config"], dict):
        raise ValueError(f"--config must be a JSON object, got {options['config']!r}")
    return TrainArgs(**options)


def parse_args(argv: list[str] | None = None) -> TrainArgs:
    return train_args(parser().parse_args(argv))


def command(ns: argparse.Namespace) -> None:
    """`frcnn-edu train`: trains, evaluates and prints the headline metrics as one JSON line."""
    metrics = run(train_args(ns))
    print(json.dumps({k: metrics[k] for k in ("map", "map_area", "train_seconds", "iterations")}))


def main(argv: list[str] | None = None) -> int:
    """`python -m frcnn_edu.train ...`, the same as `frcnn-edu train ...`: returns the exit status."""
    from .cli import main as cli_main  # cli imports this module: import it only when run
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
