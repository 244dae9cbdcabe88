"""Training and evaluation: the loop, checkpoints that survive interruption, VOC and COCO mAP, the run's logs.

    frcnn-edu train --data builtin --out runs/demo --time-budget 300    # or: python -m frcnn_edu.train ...
    frcnn-edu train --data voc --root data/VOCdevkit --year 2007+2012 --backbone vgg16 --pretrained ...
    frcnn-edu train --data coco --annotations train.json --images photos/ --test-annotations val.json ...
    torchrun --nproc_per_node=N -m frcnn_edu.train ...                 # N processes (distributed.py)

The paper's optimiser (Fast §2.3 / FRCNN §3.1.3): SGD, momentum 0.9, weight decay 5e-4; here with a linear
warm-up and a cosine decay over `--iterations` (FRCNN steps the rate down once, by 10x, after 60k of 80k
mini-batches; a cosine does the same job smoothly on short runs). Augmentation: the papers' horizontal flips,
plus zoom crops (`--zoom`, augment.zoom_crop), without which the tiny backbone memorises the 500 built-in images.
Everything random is drawn from the seed: the data order, flips and crops per epoch from (seed, epoch), the
model's anchor and RoI sampling from torch's RNG, whose state the checkpoint keeps (every rank's), so `--resume`
continues exactly where an interrupted run stopped. Within a step the loop never waits for a GPU: the batch is
copied from pinned memory, the targets' values are checked on the host, and the losses are read LOSS_READ_EVERY
steps at a time.
--batch-size is the total batch of a step, over all processes, and --lr goes with it: to use more GPUs at the same
batch per GPU, raise both by the same factor (the linear scaling rule, Goyal et al. 2017, arXiv:1706.02677).
Run folder (--out; default: a folder under the per-user cache, cache.py): checkpoint.pt (written atomically each
epoch, at the end and on Ctrl-C), losses.csv (one row per iteration), tensorboard/ (losses, learning rate, mAP
and detections, for `tensorboard --logdir RUN`), metrics.json, detections.json (COCO results), losses.png,
detections.png. The built-in dataset is generated into --root (default: the cache's builtin/).
Notebook: 06_fast_rcnn_head.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .builtin_dataset import VERSION as BUILTIN_VERSION
from .cache import cache_path
from .checkpoint import load_checkpoint, save_atomic
from .config import FasterRCNNConfig
from .distributed import World
from .exit_status import exit_status
from .metrics import voc_map
from .model import FasterRCNN
from .training_data import FromDisk, InMemory, class_names, epoch_plan, load_split, planned_batches
from .transform import check_values

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
# Steps between two reads of the losses on the host. A read waits for every kernel queued before it (a sync): on a
# GPU, reading each step would idle the device while the host launches the next step's kernels.
LOSS_READ_EVERY = 10


@dataclass
class TrainArgs:
    """Command-line options; the defaults are the demo's (tiny backbone, built-in dataset, CPU)."""

    data: str = "builtin"  # "builtin", "voc" or "coco"
    root: str = ""  # builtin: where to generate it (default: the cache's builtin/); voc: a VOCdevkit folder
    year: str = ""  # VOC year folder ("2007", "2012", "2007+2012"); builtin: "builtin"
    image_set: str = "trainval"
    test_set: str = "test"
    annotations: str = ""  # coco: the training images' COCO-format JSON file
    images: str = ""  # coco: the folder its file_name entries are relative to
    test_annotations: str = ""  # coco: the test images' JSON (default: --annotations)
    test_images: str = ""  # coco: their folder (default: --images)
    classes: tuple[str, ...] = ()  # default: the dataset's own class list
    backbone: str = "tiny"
    pretrained: bool = False
    iterations: int = 3000
    batch_size: int = 4  # images per step in total, over all processes (torchrun)
    lr: float = 0.04  # with batch norm in the tiny backbone; 0.02 learned slower on the built-in dataset
    momentum: float = 0.9  # Fast §2.3
    weight_decay: float = 5e-4  # Fast §2.3 / FRCNN §3.1.3
    warmup: int = 100
    flip: bool = True  # Fast §2.3 / FRCNN §3.3: horizontal flips, the only augmentation
    zoom: float = 0.5  # probability of a zoom crop (augment.zoom_crop; not in the papers), 0 = flips only
    amp: bool = True  # autocast for convolutions and FC layers (~1.5x on a CPU); boxes stay float32
    amp_dtype: str = "auto"  # bfloat16, or float16 with a gradient scaler; auto: bfloat16 where the device has it
    in_memory: bool = False  # decode the training images once into memory, instead of from disk each epoch
    workers: int = 0  # DataLoader processes that decode and augment the next batches (0: in the training process)
    seed: int = 0
    time_budget: float = 0.0  # seconds of training, 0 = no limit
    device: str = "cpu"
    out: str = ""  # the run folder (default: the cache's runs/train)
    resume: bool = False
    eval_images: int = 0  # evaluate on the first N test images (0 = all)
    config: dict = field(default_factory=dict)  # FasterRCNNConfig overrides


def training_images(args: TrainArgs, image_set: str, test: bool = False) -> FromDisk:
    """The split's images as the run reads them: decoded once (--in-memory) or from disk when needed."""
    splits = load_split(args, image_set, test=test)
    return InMemory(splits) if args.in_memory else FromDisk(splits)


def autocast_dtype(args: TrainArgs, device: torch.device) -> torch.dtype:
    """--amp-dtype, or bfloat16 where the device computes in it (CPUs, Ampere and later GPUs), else float16."""
    choices = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if args.amp_dtype in choices:
        return choices[args.amp_dtype]
    if args.amp_dtype != "auto":
        raise ValueError(f"--amp-dtype must be auto, bfloat16 or float16, got {args.amp_dtype!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():  # e.g. a T4
        return torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def unchecked(model: FasterRCNN):
    """The model without its check of the targets' values, which reads the device (a sync on a GPU): the Trainer
    checks them before they leave the host."""
    checks, model.check_inputs = model.check_inputs, False
    try:
        yield model
    finally:
        model.check_inputs = checks


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


class RunLog:
    """losses.csv and TensorBoard's event files, written as training goes (rank 0 only).

    On resume the CSV keeps the rows up to the checkpoint's iteration, so it matches the weights; TensorBoard
    shows a resumed run's repeated iterations as its own newer points."""

    def __init__(self, folder: Path, iteration: int):
        path = folder / "losses.csv"
        rows = []
        if iteration and path.exists():
            with open(path) as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if int(r[0]) <= iteration]
        self.file = open(path, "w", newline="")
        self.csv = csv.writer(self.file)
        self.csv.writerow(["iteration", "seconds", "lr", *LOSS_NAMES])
        self.csv.writerows(rows)
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when a run starts
        self.board = SummaryWriter(str(folder / "tensorboard"), purge_step=iteration + 1, flush_secs=10)

    def step(self, iteration: int, seconds: float, lr: float, losses: dict[str, float]) -> None:
        self.csv.writerow([iteration, f"{seconds:.2f}", f"{lr:.6f}"] + [f"{losses[k]:.5f}" for k in LOSS_NAMES])
        self.file.flush()
        for name, value in losses.items():
            self.board.add_scalar(f"loss/{name.removeprefix('loss_')}", value, iteration)
        self.board.add_scalar("loss/total", sum(losses.values()), iteration)
        self.board.add_scalar("lr", lr, iteration)

    def close(self) -> None:
        self.file.close()
        self.board.close()


class Trainer:
    """The training loop with progress, logging, checkpoints, resume, a time budget, and torchrun's processes."""

    def __init__(self, args: TrainArgs, model: FasterRCNN, data: FromDisk, world: World = World(),
                 device: torch.device | None = None):
        self.args, self.model, self.data, self.world = args, model, data, world
        self.device = device or torch.device(args.device)
        distributed.check_batch(args.batch_size, world)
        self.out = run_folder(args)
        if world.main:
            self.out.mkdir(parents=True, exist_ok=True)
        # the network that computes the losses: DistributedDataParallel averages its gradients over the ranks
        self.network = model if world.size == 1 else torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        self.classes = list(class_names(args))  # read once: a COCO file's categories come from parsing it all
        self.amp_dtype = autocast_dtype(args, self.device)
        # float16's narrow range underflows small gradients: scale the loss up, and the gradients back down
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.amp and self.amp_dtype == torch.float16)
        self.iteration, self.train_seconds = 0, 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def recipe(self) -> dict:
        """What determines the weights apart from the model config: the optimisation and data options."""
        skip = ("out", "root", "resume", "time_budget", "device", "eval_images", "in_memory", "workers",
                "annotations", "images", "test_annotations", "test_images")
        recipe = {k: v for k, v in asdict(self.args).items() if k not in skip}
        if self.args.data == "builtin":  # a new version of the generator draws other images
            recipe["builtin_version"] = BUILTIN_VERSION
        return recipe

    def _rng_states(self) -> dict:
        return dict(cpu=torch.get_rng_state(),
                    cuda=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    def state(self) -> dict:
        """The checkpoint: weights, optimiser, progress, and every rank's random-number states (rank order)."""
        rngs = distributed.gather(self._rng_states(), self.world)  # a collective: every rank calls save()
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), iteration=self.iteration,
                    train_seconds=self.train_seconds, rng=rngs[0]["cpu"], rank_rngs=rngs,
                    scaler=self.scaler.state_dict(), recipe=self.recipe(), config=asdict(self.model.config),
                    num_classes=self.model.num_classes, backbone=self.args.backbone, classes=self.classes,
                    world_size=self.world.size)

    def save(self) -> None:
        state = self.state()
        if self.world.main:
            save_atomic(state, self.checkpoint_path)

    def load(self) -> None:
        """Continue from checkpoint.pt; refuse one made with another model configuration or number of processes."""
        if not self.checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
        state = load_checkpoint(self.checkpoint_path, self.device)
        mine = dict(config=asdict(self.model.config), num_classes=self.model.num_classes, backbone=self.args.backbone,
                    classes=self.classes, world_size=self.world.size)
        for key, value in mine.items():
            if state.get(key, 1 if key == "world_size" else None) != value:
                raise ValueError(f"{self.checkpoint_path} comes from another configuration: {key} is "
                                 f"{state.get(key)!r} there, {value!r} here")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.train_seconds = state["iteration"], state["train_seconds"]
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        rngs = state.get("rank_rngs") or [dict(cpu=state["rng"], cuda=None)]
        torch.set_rng_state(rngs[self.world.rank]["cpu"].cpu())
        if rngs[self.world.rank]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rngs[self.world.rank]["cuda"].cpu(), self.device)

    def step(self, images: list, targets: list) -> torch.Tensor:
        """One SGD step on this rank's images (CPU tensors), read-free (bfloat16 or no autocast).

        Returns:
            [4] float32 on the device, unread: this rank's losses in LOSS_NAMES order.
        """
        self.lr = learning_rate(self.args, self.iteration, self.train_seconds)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        if self.model.check_inputs:
            check_values(targets, self.model.num_classes)  # here, on the host, where a read costs nothing
        images = [self.to_device(image) for image in images]
        targets = [{k: self.to_device(v) for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.args.amp), unchecked(self.model):
            losses = self.network(images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(losses.values())).backward()
        self.scaler.step(self.optimizer)  # float16's scaler reads whether a gradient overflowed: its one sync
        self.scaler.update()
        self.iteration += 1
        return torch.stack([losses[name].detach().float() for name in LOSS_NAMES])

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CPU tensor copied to the training device without waiting for it: to a GPU from pinned memory (a copy
        from ordinary, pageable memory first waits for every kernel already queued)."""
        if self.device.type == "cuda" and not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def read_losses(self, pending: list[tuple[int, float, float, torch.Tensor]], log: RunLog | None) -> dict:
        """The losses of the steps since the last read, read in one transfer (one sync) and averaged over the
        ranks, into the log. pending: (iteration, seconds, lr, losses [4] on the device) per step, emptied.
        Returns those steps' mean losses by name."""
        rows = distributed.mean_over_ranks(torch.stack([losses for *_, losses in pending]), self.world).tolist()
        if log:
            for (iteration, seconds, lr, _), row in zip(pending, rows):
                log.step(iteration, seconds, lr, dict(zip(LOSS_NAMES, row)))
        pending.clear()
        return {name: sum(column) / len(rows) for name, column in zip(LOSS_NAMES, zip(*rows))}

    def fit(self, stop_after: int | None = None) -> None:
        """Train up to args.iterations (or `stop_after` more iterations, for tests), within the time budget."""
        args, world = self.args, self.world
        self.model.train()
        per_epoch = len(self.data) // args.batch_size
        if per_epoch == 0:
            raise ValueError(f"--batch-size {args.batch_size} is larger than the {len(self.data)} training images")
        last = args.iterations if stop_after is None else min(args.iterations, self.iteration + stop_after)
        log = RunLog(self.out, self.iteration) if world.main else None
        bar = tqdm(total=args.iterations, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True,
                   disable=None if world.main else True)
        started, running, pending = time.perf_counter() - self.train_seconds, None, []
        try:
            while self.iteration < last:
                epoch, position = divmod(self.iteration, per_epoch)
                plan = epoch_plan(len(self.data), args.batch_size, args.seed, epoch, args.flip, args.zoom)
                shards = [distributed.shard(batch, world) for batch in plan.batches[position:]]
                out_of_time, pin = False, self.device.type == "cuda"
                for images, targets in planned_batches(self.data, plan, shards, args.workers, pin):
                    losses = self.step(images, targets)
                    self.train_seconds = time.perf_counter() - started
                    pending.append((self.iteration, self.train_seconds, self.lr, losses))
                    bar.update(1)
                    spent = bool(args.time_budget) and self.train_seconds >= args.time_budget
                    # ranks decide together, at the reads: rank clocks differ, and DDP needs every rank each step
                    if len(pending) == LOSS_READ_EVERY or self.iteration >= last or (spent and world.size == 1):
                        losses = self.read_losses(pending, log)
                        running = losses if running is None else {k: 0.9 * running[k] + 0.1 * losses[k] for k in losses}
                        bar.set_postfix(loss=f"{sum(running.values()):.3f}", cls=f"{running['loss_classifier']:.3f}")
                        out_of_time = distributed.any_rank(spent, world, self.device)
                    if self.iteration >= last or out_of_time:
                        break
                if pending:
                    self.read_losses(pending, log)  # the log then has every row up to the checkpoint's iteration
                self.save()  # each epoch (and at the end)
                if out_of_time:
                    tqdm.write(f"time budget of {args.time_budget:.0f} s reached at iteration {self.iteration}")
                    break
        except KeyboardInterrupt:
            if world.size == 1:
                if pending:
                    self.read_losses(pending, log)
                self.save()
                tqdm.write(f"interrupted: checkpoint saved at iteration {self.iteration} in {self.checkpoint_path}; "
                           "continue with --resume")
            else:  # the other processes may be gone, and saving gathers from every one: keep the epoch's checkpoint
                tqdm.write("interrupted: continue from the last epoch's checkpoint with --resume")
            raise
        finally:
            bar.close()
            if log:
                log.close()


@torch.no_grad()
def predict(model: FasterRCNN, data: FromDisk, device: torch.device, batch_size: int = 8,
            limit: int = 0) -> list[dict]:
    """Detections (orig px, on the CPU) for the first `limit` images of `data` (all when 0)."""
    model.eval()
    count = len(data) if not limit else min(limit, len(data))
    results = []
    for start in tqdm(range(0, count, batch_size), desc="eval", unit="batch", disable=None):
        images = [data.get(i, False, device)[0] for i in range(start, min(start + batch_size, count))]
        results += [{k: v.cpu() for k, v in r.items()} for r in model(images)]
    return results


def evaluate(model: FasterRCNN, data: FromDisk, device: torch.device, names: tuple[str, ...],
             limit: int = 0) -> tuple[dict, list[dict]]:
    """VOC07 11-point mAP@0.5, the VOC2010+ area mAP, and COCO's mAP@[.5:.95], AP50 and AP75 (coco_eval.py) on
    `data`; also returns the detections."""
    from .coco_eval import coco_map

    detections = predict(model, data, device, limit=limit)
    truths = data.targets[: len(detections)]
    voc07, area = voc_map(detections, truths, use_07_metric=True), voc_map(detections, truths, use_07_metric=False)
    metrics = dict(map=voc07["map"], map_area=area["map"], **coco_map(detections, truths, names),
                   ap={names[c - 1]: voc07["ap"][c] for c in sorted(voc07["ap"])}, test_images=len(detections))
    return metrics, detections


def build_model(args: TrainArgs, num_classes: int) -> FasterRCNN:
    base = FasterRCNNConfig.tiny_cpu() if args.backbone == "tiny" else FasterRCNNConfig.paper_vgg16()
    config = base.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.config.items()})
    return FasterRCNN(num_classes, args.backbone, config, pretrained=args.pretrained)


def write_results(out: Path, iteration: int, metrics: dict, detections: list[dict], test_data: FromDisk,
                  names: tuple[str, ...]) -> None:
    """metrics.json, detections.json (COCO results: a COCO file's own image and category ids, else images numbered
    in test-set order), losses.png, detections.png, and the metrics and picture in TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    from . import viz
    from .coco_eval import coco_results
    from .training_data import read_pixels

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    image_ids = test_data.ids[: len(detections)]
    numbered = None if all(i.isdigit() for i in image_ids) else range(1, len(image_ids) + 1)  # VOC2012's 2007_000027
    results = coco_results(detections, image_ids, numbered, test_data.category_ids)
    (out / "detections.json").write_text(json.dumps(results) + "\n")
    viz.plot_loss_curves(out / "losses.csv", out / "losses.png")
    viz.plot_detection_grid(test_data, detections, names, out / "detections.png")
    with SummaryWriter(str(out / "tensorboard")) as board:
        for key in ("map", "map_area", "map_coco", "ap50", "ap75"):
            board.add_scalar(f"eval/{key}", metrics[key], iteration)
        board.add_image("detections", read_pixels(out / "detections.png"), iteration)


def run(args: TrainArgs) -> dict:
    """Train, evaluate on the test split, and write the run's files into args.out (rank 0 only, which also
    evaluates; the other processes return {} once training ends)."""
    world, device = distributed.join(args.device)
    try:
        torch.manual_seed(args.seed)
        names = class_names(args)
        train_data = training_images(args, args.image_set)
        model = build_model(args, len(names) + 1).to(device)
        if world.size > 1:  # each rank its own anchor and RoI samples (DDP gives all of them rank 0's weights)
            torch.manual_seed(args.seed + world.rank)
        trainer = Trainer(args, model, train_data, world, device)
        if world.main:  # where it all goes
            tqdm.write(f"images from {train_data.folder}; run folder {trainer.out}", file=sys.stderr)
        if args.resume:
            trainer.load()
        trainer.fit()
    finally:
        if not world.main:
            distributed.leave(world)
    if not world.main:
        return {}
    distributed.leave(world)
    test_data = training_images(args, args.test_set, test=True)
    metrics, detections = evaluate(model, test_data, device, names, args.eval_images)
    metrics.update(train_seconds=round(trainer.train_seconds, 1), iterations=trainer.iteration,
                   train_images=len(train_data), backbone=args.backbone, device=args.device,
                   world_size=world.size, total_batch=args.batch_size,
                   batch_per_process=args.batch_size // world.size)
    write_results(trainer.out, trainer.iteration, metrics, detections, test_data, names)
    return metrics


HELP = {"root": f"builtin: where to generate it (default: {cache_path('builtin')}); voc: a VOCdevkit folder",
        "year": "voc: 2007, 2012, or 2007+2012 (trains on both, tests on the first); builtin: builtin",
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
    """`frcnn-edu train`: trains, evaluates and prints the headline metrics as one JSON line (rank 0)."""
    metrics = run(train_args(ns))
    if metrics:
        print(json.dumps({k: metrics[k] for k in ("map", "map_area", "map_coco", "train_seconds", "iterations")}))


def main(argv: list[str] | None = None) -> int:
    """`python -m frcnn_edu.train ...`, the same as `frcnn-edu train ...`: returns the exit status."""
    return exit_status(command, parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
