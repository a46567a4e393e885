"""The training loop: `train_one_epoch`, `evaluate`, `fit`. Reads top to bottom as the recipe.

The dataset lives on the training device as uint8 (35,887 x 48 x 48 is 83 MB), batches are gathered by
index and augmented there in one call, so no DataLoader workers or per-image transforms are needed.
Every epoch is seeded from (seed, epoch), which makes a resumed run repeat an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fer_core import checkpoint as ckpt_io
from fer_core import runs
from fer_core.augment import BatchAugment
from fer_core.budget import PROBE_STEPS, WARM_STEPS, TimeBudget
from fer_core.config import TrainConfig, save_yaml, to_dict
from fer_core.dataset import FerData, Split
from fer_core.device import resolve_device, use_bf16, use_channels_last
from fer_core.infer import predict_probs
from fer_core.labels import CLASSES
from fer_core.losses import make_loss
from fer_core.metrics import confusion_matrix, macro_f1, per_class
from fer_core.models import create_model
from fer_core.sampling import epoch_indices, focus_weights

Report = Callable[[dict[str, Any], str], None]


# ----------------------------------------------------------------------------------------------- setup
def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    return {"head_width": cfg.head_width, "dropout": cfg.dropout, "dropout2": cfg.dropout2,
            "pretrained": cfg.pretrained, "img_size": cfg.img_size}


def build_model(cfg: TrainConfig) -> nn.Module:
    return create_model(cfg.model, num_classes=len(CLASSES), **model_kwargs(cfg))


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters()]
    # fused kernels: one launch for the whole update instead of several per tensor (matters at small batches)
    fused = {"fused": True} if params[0].is_cuda else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (stepped every batch, so short runs anneal smoothly)."""
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    floor = cfg.lr_min / cfg.lr
    if step < warmup:
        return floor + (1 - floor) * (step + 1) / warmup
    if cfg.scheduler in ("cosine", "onecycle"):
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "wsd":  # constant until the decay: a checkpoint before it is any length's checkpoint
        decay = max(1, int(cfg.decay_fraction * total_steps))
        progress = min(1.0, max(0.0, (step - (total_steps - decay)) / decay))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "step":  # x0.1 at half and at three quarters of the run
        return 0.1 ** ((step >= total_steps // 2) + (step >= 3 * total_steps // 4))
    return 1.0


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


@dataclass
class EvalResult:
    probs: np.ndarray
    loss: float
    probs_tta: np.ndarray | None = None

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.probs.argmax(1) == labels).mean()) if len(labels) else 0.0


@dataclass
class FitResult:
    run_dir: Path | None
    best_epoch: int
    best_metric: float
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    config: TrainConfig | None = None  # the settings trained, with a time budget's planned epochs


# ----------------------------------------------------------------------------------------- the verbs
def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                    images: torch.Tensor, labels: torch.Tensor, order: np.ndarray, cfg: TrainConfig,
                    augment: BatchAugment, generator: torch.Generator, set_lr: Callable[[], None],
                    bf16: bool, channels_last: bool, progress: Callable[[int, int], None] | None = None
                    ) -> tuple[float, float]:
    """One pass over `order` (indices into images/labels). Returns (mean loss, accuracy)."""
    model.train()
    device = images.device
    order_t = torch.from_numpy(order).to(device)
    n_batches = len(order) // cfg.batch_size or 1  # drop the ragged last batch: BN needs > 1 image
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    for b in range(n_batches):
        idx = order_t[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        x = augment(images[idx], generator)
        y = labels[idx]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        set_lr()
        with autocast:
            logits = model(x)
            loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if progress:
            progress(b + 1, n_batches)
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


def validate(model: nn.Module, split: Split, cfg: TrainConfig, tta: bool = False, bf16: bool = False,
             channels_last: bool = False) -> EvalResult:
    """Probabilities and plain cross-entropy (no weights, no smoothing) on a split (the per-epoch check;
    finished models are scored by `fer_core.evaluate.evaluate`)."""
    device = next(model.parameters()).device
    images = torch.from_numpy(split.images).to(device) if isinstance(split.images, np.ndarray) else split.images
    probs, probs_tta = predict_probs(model, images, cfg.mean, cfg.std, cfg.eval_batch_size, tta, bf16, channels_last)
    labels = np.asarray(split.labels)
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()) if len(labels) else 0.0
    return EvalResult(probs, loss, probs_tta)


def eval_speed(model: nn.Module, split: Split, cfg: TrainConfig, bf16: bool, channels_last: bool) -> float:
    """Images per second of a validation pass (up to 1,024 images, after an untimed warm-up batch)."""
    n = min(len(split), 1024)
    warm = Split(split.images[:min(n, 64)], np.asarray(split.labels)[:min(n, 64)])
    timed = Split(split.images[:n], np.asarray(split.labels)[:n])
    validate(model, warm, cfg, bf16=bf16, channels_last=channels_last)
    start = time.perf_counter()
    validate(model, timed, cfg, bf16=bf16, channels_last=channels_last)
    return n / (time.perf_counter() - start)


def is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def load_init_weights(model: nn.Module, cfg: TrainConfig) -> None:
    """Load cfg.init_weights' network (its first checkpoint, for an ensemble) into `model`, which must be the
    same architecture: the checkpoint's model and every tensor shape must match cfg's."""
    files, _ = runs.resolve_checkpoints(cfg.init_weights)
    ckpt = ckpt_io.load_checkpoint(files[0])
    if ckpt["model_name"] != cfg.model:
        raise ValueError(f"init_weights {files[0]} is a {ckpt['model_name']} and this run trains a {cfg.model}; "
                         f"set model={ckpt['model_name']} or start from another checkpoint")
    own = model.state_dict()
    differ = [f"{k} {tuple(v.shape)} against {tuple(own[k].shape)}" for k, v in ckpt["state_dict"].items()
              if k in own and v.shape != own[k].shape]
    missing = sorted(set(own) ^ set(ckpt["state_dict"]))
    if differ or missing:
        raise ValueError(f"init_weights {files[0]} does not fit this run's {cfg.model}: "
                         f"{'; '.join(differ[:3] or missing[:3])}; its settings were "
                         f"{ckpt['model_kwargs']} (match head_width, dropout and img_size to them)")
    model.load_state_dict(ckpt["state_dict"])


# ------------------------------------------------------------------------------------------------ fit
def fit(cfg: TrainConfig, data: FerData, run_dir: str | Path | None = None, report: Report | None = None,
        resume: bool = False, log: Callable[[str], None] = print,
        progress: Callable[[int, int, int], None] | None = None, budget: TimeBudget | None = None) -> FitResult:
    """Train `cfg` on `data`, checkpointing every epoch into run_dir/weights (last.pt, best.pt).

    `report(metrics_row, last_checkpoint_path)` is called after every epoch; the search passes one that
    calls `tune.report`. With `resume`, training continues from run_dir/weights/last.pt. With `budget`,
    cfg.epochs is planned from the speed measured in the first steps (`fer_core.budget`) and
    FitResult.config holds the plan.
    """
    if data.train is None or data.val is None:
        raise ValueError(f"{data.source}: training needs train and val splits; load the data with "
                         "fer_core.data.load_data(path) (no `splits`)")
    device = resolve_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    cfg = dataclasses.replace(cfg)  # a time budget re-plans cfg.epochs; the caller's object stays as it was
    run_dir = Path(run_dir) if run_dir else None
    weights_dir = run_dir / runs.WEIGHTS if run_dir else None

    train = data.train
    if cfg.train_subset and cfg.train_subset < len(train):
        from fer_core.data import stratified_subset

        train = stratified_subset(train, cfg.train_subset, cfg.seed)
    model = build_model(cfg)
    if cfg.init_weights and not resume:  # a resumed run's last.pt holds newer weights
        load_init_weights(model, cfg)
    model = model.to(device)
    channels_last = use_channels_last(cfg, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    bf16 = use_bf16(cfg, device)
    optimizer = build_optimizer(cfg, model)
    # torch.compile fuses the small kernels that dominate at batch 64 on a GPU; the plain module is kept
    # for evaluation and checkpoints (same parameters), so eval batch sizes never trigger recompiles.
    train_model = torch.compile(model) if cfg.compile else model
    loss_fn = make_loss(cfg, train.labels, len(CLASSES), device)
    augment = BatchAugment(cfg)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    total_steps = cfg.planned_steps or steps_per_epoch * cfg.epochs
    can_freeze = bool(cfg.pretrained) and cfg.freeze_epochs > 0 and hasattr(model, "backbone_parameters")

    start_epoch, best_metric, best_epoch, history = 0, None, 0, []
    sampler_weights = np.ones(len(CLASSES))
    if resume:
        last = ckpt_io.load_checkpoint(weights_dir / runs.LAST, map_location=device)
        model.load_state_dict(last["state_dict"])
        optimizer.load_state_dict(last["optimizer"])
        start_epoch, best_epoch = int(last["epoch"]), int(last["best_epoch"])
        best_metric = last["best_metric"]
        sampler_weights = np.asarray(last["sampler_weights"], dtype=np.float64)
        ckpt_io.set_rng_state(last["rng"])
        # metrics.csv may be one row behind or ahead of last.pt if the kill fell between the two writes
        history = [r for r in runs.read_metrics(run_dir) if r["epoch"] <= start_epoch]
        if not history or history[-1]["epoch"] < start_epoch:
            history.append(dict(last["metrics"]))
        log(f"resuming at epoch {start_epoch + 1}/{cfg.epochs} from {weights_dir / runs.LAST}")
    if run_dir:
        weights_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / runs.CONFIG)

    images = torch.from_numpy(train.images).to(device)
    labels = torch.from_numpy(np.asarray(train.labels, dtype=np.int64)).to(device)
    val_images = torch.from_numpy(data.val.images).to(device)
    val_split = Split(val_images, np.asarray(data.val.labels))
    step = start_epoch * steps_per_epoch
    stopped_early = False
    if budget is not None and resume:
        budget = None  # a resumed run keeps the plan its config.yaml records
    eval_img_s = eval_speed(model, val_split, cfg, bf16, channels_last) if budget else 0.0
    probe_start, planned = 0.0, False
    pace: tuple[float, float] | None = None  # (seconds a training step, seconds a validation) of the last full epoch

    def plan(train_img_s: float, epoch_spent: float) -> None:
        nonlocal total_steps, planned
        planned = True
        total_steps = budget.plan(train_img_s, eval_img_s, steps_per_epoch, cfg.batch_size, len(val_split), epoch_spent)
        cfg.planned_steps, cfg.epochs = total_steps, math.ceil(total_steps / steps_per_epoch)
        cfg.measured_img_s = round(train_img_s, 1)
        log(f"time budget {budget.minutes:g} min: {cfg.epochs} epochs planned ({total_steps / steps_per_epoch:.2f} "
            f"epochs of steps) at {train_img_s:.0f} img/s training, "
            f"{eval_img_s:.0f} img/s evaluation (an epoch {budget.epoch_seconds:.0f} s, final evaluation "
            f"{budget.final_seconds:.0f} s)")
        if run_dir:
            save_yaml(cfg, run_dir / runs.CONFIG)

    def probe(local_step: int) -> None:
        """Times training steps WARM_STEPS..WARM_STEPS+PROBE_STEPS of the first epoch, then plans."""
        nonlocal probe_start
        if local_step == WARM_STEPS:
            probe_start = time.perf_counter()
        elif local_step == WARM_STEPS + PROBE_STEPS:
            plan(PROBE_STEPS * cfg.batch_size / (time.perf_counter() - probe_start), time.perf_counter() - t0)

    epoch = start_epoch
    while epoch < cfg.epochs:
        if best_metric is not None and cfg.patience > 0 and epoch - best_epoch >= cfg.patience:
            stopped_early = True
            log(f"early stop: no better {cfg.metric} in {cfg.patience} epochs (best at epoch {best_epoch})")
            break
        epoch_steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)  # the planned last may be partial
        if budget is not None and epoch > start_epoch:
            if pace:  # the steps still to take, at the last full epoch's pace: the schedule's tail moves with it
                left, replanned = budget.resize(*pace, steps_per_epoch)
                before, planned_before, total_steps = cfg.epochs, cfg.planned_steps, step + left
                cfg.planned_steps, cfg.epochs = total_steps, math.ceil(total_steps / steps_per_epoch)
                epoch_steps = min(steps_per_epoch, left)
                if replanned:
                    log(f"time budget: the last epoch took {history[-1]['seconds']:.0f} s; re-planned "
                        f"{before} -> {cfg.epochs} epochs")
                if run_dir and cfg.planned_steps != planned_before:
                    save_yaml(cfg, run_dir / runs.CONFIG)
            elif not budget.room_for(epoch_steps):
                log(f"time budget: no time for epoch {epoch + 1} ({budget.left():.0f} s left); stopping")
                break
        seed = epoch_seed(cfg.seed, epoch)
        torch.manual_seed(seed)  # dropout; the generator below drives augmentation
        generator = torch.Generator(device=device).manual_seed(seed)
        order = epoch_indices(train.labels, sampler_weights, np.random.default_rng(seed))
        if epoch_steps < steps_per_epoch:
            order = order[:epoch_steps * cfg.batch_size]
        if can_freeze:
            frozen = epoch < cfg.freeze_epochs
            for p in model.backbone_parameters():
                p.requires_grad_(not frozen)

        epoch_first_step = step

        def set_lr() -> None:
            nonlocal step
            if budget is not None and not planned:
                probe(step - epoch_first_step)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, step, total_steps, steps_per_epoch)
            step += 1

        t0 = time.perf_counter()
        bar = (lambda b, n, e=epoch: progress(e + 1, b, n)) if progress else None
        train_loss, train_acc = train_one_epoch(train_model, optimizer, loss_fn, images, labels, order, cfg, augment,
                                                generator, set_lr, bf16, channels_last, bar)
        train_seconds = time.perf_counter() - t0
        if epoch_steps == steps_per_epoch:
            pace = (train_seconds / epoch_steps, 0.0)
        if budget is not None and not planned:  # an epoch too short to probe: plan from all of it
            plan(len(order) / train_seconds, train_seconds)
        val = validate(model, val_split, cfg, bf16=bf16, channels_last=channels_last)
        confusion = confusion_matrix(val_split.labels, val.probs.argmax(1), len(CLASSES))
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val.loss, "val_acc": val.accuracy(val_split.labels),
               "val_macro_f1": macro_f1(confusion), "seconds": time.perf_counter() - t0}
        history.append(row)
        if pace is not None and epoch_steps == steps_per_epoch:
            pace = (pace[0], row["seconds"] - train_seconds)
        if cfg.focus_k > 0 and epoch + 1 >= cfg.focus_start:
            sampler_weights = focus_weights(per_class(confusion)[2], cfg.focus_k, cfg.focus_weight)
        improved = is_better(cfg.metric, row[cfg.metric], best_metric)
        if improved:
            best_metric, best_epoch = row[cfg.metric], epoch + 1

        last_path = ""
        if run_dir:
            state = make_checkpoint(cfg, model, optimizer, epoch + 1, best_metric, best_epoch, sampler_weights, row)
            last_path = str(weights_dir / runs.LAST)
            ckpt_io.atomic_torch_save(state, last_path)
            if improved:
                staged = weights_dir / f".{runs.BEST}.tmp"
                shutil.copyfile(last_path, staged)
                staged.replace(weights_dir / runs.BEST)
            runs.write_metrics(run_dir, history)
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {train_loss:.4f}  train_acc {train_acc:.4f}  "
            f"val_acc {row['val_acc']:.4f}  val_f1 {row['val_macro_f1']:.4f}  "
            f"{len(order) / train_seconds:.0f} img/s  {row['seconds']:.1f}s" + ("  *" if improved else ""))
        if report:
            report(dict(row, best_metric=best_metric, best_epoch=best_epoch, epochs_planned=cfg.epochs), last_path)
        epoch += 1
    return FitResult(run_dir, best_epoch, best_metric if best_metric is not None else float("nan"),
                     epochs_done=len(history), history=history, stopped_early=stopped_early, config=cfg)


def make_checkpoint(cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    best_metric: float | None, best_epoch: int, sampler_weights: np.ndarray,
                    metrics: dict[str, Any]) -> dict[str, Any]:
    """The SPEC.md checkpoint dict: enough to resume exactly and to rebuild the model from the file alone."""
    state_dict = {k: v.detach().to("cpu", memory_format=torch.contiguous_format) if v.dim() == 4 else v.detach().cpu()
                  for k, v in model.state_dict().items()}
    return {
        "format": ckpt_io.FORMAT,
        "model_name": cfg.model,
        "model_kwargs": model_kwargs(cfg),
        "classes": list(CLASSES),
        "preprocess": {"img_size": cfg.img_size, "mean": cfg.mean, "std": cfg.std, "gray": True},
        "config": to_dict(cfg),
        "state_dict": state_dict,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": cfg.scheduler, "epoch": epoch},  # the LR is a pure function of the step
        "scaler": {},  # bf16 autocast needs no loss scaler
        "sampler_weights": [float(w) for w in sampler_weights],
        "epoch": epoch,
        "best_metric": float(best_metric) if best_metric is not None else None,
        "best_epoch": best_epoch,
        "rng": ckpt_io.rng_state(),
        "metrics": {k: (float(v) if k != "epoch" else int(v)) for k, v in metrics.items()},
    }
