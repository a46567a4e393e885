"""Training and evaluation throughput (img/s) of fertune's loop, beside a plain baseline and the compute ceiling.

For each model and batch size, in one process and one thread setting:
  fertune   the real train_one_epoch: uint8 data resident on the device, batched augmentation there,
            the config's autocast and memory format, grad clipping, optimizer step
  baseline  the same network fed by a torchvision DataLoader with per-image PIL transforms (flip,
            RandomAffine, ToTensor, Normalize, RandomErasing), fp32, contiguous: a typical seed-style loop
  ceiling   the same network, batch size, dtype, memory format and threads on random tensors already in
            memory: forward + backward + optimizer step, nothing else
  eval      fertune's predict_probs over uint8 images
Each is timed over --steps steps after --warmup steps. Usage:
  python bench/train_throughput.py --models cnn_small --batch-sizes 64 --threads 2 --out bench/results/cpu.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from fer_core import config
from fer_core.augment import BatchAugment
from fer_core.losses import make_loss
from fer_core.device import resolve_device, use_bf16, use_channels_last
from fer_core.infer import predict_probs
from fer_core.train import build_model, build_optimizer, train_one_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _setup(cfg, device):
    model = build_model(cfg).to(device)
    channels_last = use_channels_last(cfg, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, build_optimizer(cfg, model), channels_last, use_bf16(cfg, device)


def bench_fertune(cfg, device, images, labels, steps, warmup):
    model, opt, channels_last, bf16 = _setup(cfg, device)
    if cfg.compile:
        model = torch.compile(model)
    loss_fn = make_loss(cfg, labels.cpu().numpy(), 7, device)
    augment, gen = BatchAugment(cfg), torch.Generator(device=device).manual_seed(0)
    rng = np.random.default_rng(0)

    def run(n_steps):
        order = rng.integers(0, len(labels), n_steps * cfg.batch_size)
        train_one_epoch(model, opt, loss_fn, images, labels, order, cfg, augment, gen, lambda: None, bf16, channels_last)

    run(warmup)
    _sync(device)
    t0 = time.perf_counter()
    run(steps)
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def bench_ceiling(cfg, device, steps, warmup):
    model, opt, channels_last, bf16 = _setup(cfg, device)
    if cfg.compile:
        model = torch.compile(model)
    model.train()
    x = torch.randn(cfg.batch_size, 1, cfg.img_size, cfg.img_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (cfg.batch_size,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    loss_fn = torch.nn.CrossEntropyLoss()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with autocast:
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def bench_baseline(cfg, device, images_np, labels_np, steps, warmup, workers):
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    tf = T.Compose([T.RandomHorizontalFlip(), T.RandomAffine(cfg.rotate_deg, translate=(cfg.translate, cfg.translate)),
                    T.ToTensor(), T.Normalize([cfg.mean], [cfg.std]),
                    T.RandomErasing(p=cfg.erase_p, scale=tuple(cfg.erase_scale))])

    class Faces(Dataset):
        def __len__(self):
            return len(labels_np)

        def __getitem__(self, i):
            return tf(Image.fromarray(images_np[i])), int(labels_np[i])

    model = build_model(cfg).to(device)
    opt = build_optimizer(cfg, model)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    loader = DataLoader(Faces(), batch_size=cfg.batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model.train()
    done = 0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            done += 1
            if done == warmup + steps:
                break
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def bench_eval(cfg, device, images, steps):
    model, _, channels_last, bf16 = _setup(cfg, device)
    n = min(len(images), steps * cfg.eval_batch_size)
    predict_probs(model, images[:cfg.eval_batch_size], cfg.mean, cfg.std, cfg.eval_batch_size, bf16=bf16,
                  channels_last=channels_last)
    _sync(device)
    t0 = time.perf_counter()
    predict_probs(model, images[:n], cfg.mean, cfg.std, cfg.eval_batch_size, bf16=bf16, channels_last=channels_last)
    _sync(device)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="cnn_small")
    p.add_argument("--batch-sizes", default="", help="comma list; default: each model's preset batch size")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--eval-steps", type=int, default=20, help="eval batches timed (eval_batch_size each)")
    p.add_argument("--baseline-workers", type=int, default=0)
    p.add_argument("--skip", default="", help="comma list of parts to skip: baseline, ceiling, eval")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="TrainConfig key=value")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    pool = 4096
    rng = np.random.default_rng(0)
    images_np = rng.integers(0, 256, (pool, 48, 48), dtype=np.uint8)
    labels_np = rng.integers(0, 7, pool).astype(np.int64)
    images, labels = torch.from_numpy(images_np).to(device), torch.from_numpy(labels_np).to(device)
    rows = []
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.steps} steps after {args.warmup}")
    print(f"{'model':<10}{'batch':>6}{'fertune':>10}{'ceiling':>10}{'ratio':>7}{'baseline':>10}{'eval':>10}  (img/s)")
    for model in args.models.split(","):
        base = config.resolve({"model": model, **config.parse_set(args.overrides)})
        sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [base.batch_size]
        for bs in sizes:
            cfg = config.resolve({**config.to_dict(base), "batch_size": bs, "device": str(device)})
            row = {"model": model, "batch_size": bs, "device": str(device), "threads": torch.get_num_threads(),
                   "amp": "bf16" if use_bf16(cfg, device) else "fp32", "steps": args.steps}
            row["fertune"] = bench_fertune(cfg, device, images, labels, args.steps, args.warmup)
            row["ceiling"] = None if "ceiling" in skip else bench_ceiling(cfg, device, args.steps, args.warmup)
            row["baseline"] = None if "baseline" in skip else bench_baseline(
                cfg, device, images_np, labels_np, args.steps, args.warmup, args.baseline_workers)
            row["eval"] = None if "eval" in skip else bench_eval(cfg, device, images, args.eval_steps)
            ratio = row["fertune"] / row["ceiling"] if row["ceiling"] else float("nan")
            fmt = lambda v: f"{v:>10.0f}" if v else f"{'-':>10}"  # noqa: E731
            print(f"{model:<10}{bs:>6}{fmt(row['fertune'])}{fmt(row['ceiling'])}{ratio:>7.2f}{fmt(row['baseline'])}"
                  f"{fmt(row['eval'])}", flush=True)
            rows.append(row)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
