"""Training throughput (images/s) of FairTuneClassifier against plain PyTorch loops.

Issue 5 asks for the paper's scale on a GPU: ViT-B/16 at 224 px with random
weights, ``FairTuneClassifier`` against a plain PyTorch loop, in images per
second. This script measures that on whatever device it finds:

* ``plain fp32``: the loop a user writes first: model and data on the device,
  masked-out parameters frozen with ``requires_grad=False``, AdamW, float32;
* ``plain bf16``: the same loop under ``torch.autocast(bfloat16)``, the floor for
  ``FairTuneClassifier``'s default ``precision="auto"`` on CUDA;
* ``skfairtune``: ``FairTuneClassifier(...).fit`` with its defaults (uint8
  images moved per batch, bf16 autocast on CUDA, float32 on the CPU,
  frozen-prefix cache).

Epoch 1 is a warm-up for every contestant (kernel selection, the frozen cache's
one inference pass) and is not timed; the table reports the best later epoch.

Usage::

    python benchmarks/bench_throughput.py            # ViT-B/16, 224 px (meant for a GPU)
    python benchmarks/bench_throughput.py --smoke    # tiny 12-block ViT, 32 px, seconds on a CPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Run from a checkout without installing: the repository root holds the package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import BenchConfig, normalize_images  # noqa: E402

MASKS = ("full", "attention", "linear")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(args, mask: str, device: torch.device):
    """A timm ViT with the mask applied as ``requires_grad``, as a hand-written loop would."""
    from skfairtune.backbone import build_backbone
    from skfairtune.masks import MaskSpace, apply_mask

    module = build_backbone(args.model, model_kwargs=_model_kwargs(args), num_classes=2, pretrained=False)
    apply_mask(module, MaskSpace.from_model("ln-attn-mlp", module).resolve(mask))
    return module.to(device)


def _model_kwargs(args) -> dict:
    if args.smoke:
        # bench_search.py's 12-block model, so the smoke numbers sit beside its floor table.
        return BenchConfig(image_size=args.img_size).model_kwargs
    return dict(img_size=args.img_size)


def plain_loop(args, mask: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
               bf16: bool) -> list[float]:
    torch.manual_seed(0)
    model = _model(args, mask, device).train()
    X = normalize_images(images).to(device)
    y = labels.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    seconds = []
    for _ in range(args.epochs):
        _sync(device)
        started = time.perf_counter()
        order = torch.randperm(len(X), device=device)
        for first in range(0, len(X), args.batch_size):
            index = order[first:first + args.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(X[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def skfairtune_fit(args, mask: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> list[float]:
    from skfairtune import FairTuneClassifier

    clf = FairTuneClassifier(args.model, model_kwargs=_model_kwargs(args), pretrained=False, mask=mask,
                             lr=1e-4, max_epochs=args.epochs, batch_size=args.batch_size, device=str(device),
                             random_state=0)
    clf.fit(images.numpy().transpose(0, 2, 3, 1), labels.numpy())
    return [float(row["dur"]) for row in clf.history_]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny ViT at 32 px: seconds on a CPU")
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--img-size", type=int, default=None, help="default 224 (32 with --smoke)")
    parser.add_argument("--n-images", type=int, default=None, help="default 2048 (256 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed")
    parser.add_argument("--masks", nargs="+", default=list(MASKS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first is a warm-up); got {args.epochs}")
    if args.smoke:
        args.model = "vit_tiny_patch16_224"
    args.img_size = args.img_size or (32 if args.smoke else 224)
    args.n_images = args.n_images or (256 if args.smoke else 2048)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        # Without this a float32 matmul on Ampere+ runs without TF32; users who set it get
        # a faster fp32 baseline, so say which one is measured.
        tf32 = torch.backends.cuda.matmul.allow_tf32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# bench_throughput  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"# command: python benchmarks/bench_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# device: {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"cores {os.cpu_count()}" + (f"; fp32 matmul TF32 {tf32}" if device.type == "cuda" else ""))
    print(f"# model: {args.model} {_model_kwargs(args)}, random weights; {args.n_images} random images, "
          f"batch {args.batch_size}, {args.epochs} epochs (first not timed)")

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n_images, 3, args.img_size, args.img_size), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, 2, (args.n_images,), generator=generator)
    bf16 = device.type == "cuda" or args.smoke
    print(f"\n{'mask':<11}{'plain fp32':>12}{'plain bf16':>12}{'skfairtune':>12}{'vs fp32':>9}{'/ bf16 floor':>14}"
          "   (images/s)")
    def rate(seconds: list[float]) -> float:
        return args.n_images / min(seconds[1:])

    for mask in args.masks:
        fp32 = rate(plain_loop(args, mask, images, labels, device, bf16=False))
        low = rate(plain_loop(args, mask, images, labels, device, bf16=True)) if bf16 else float("nan")
        ours = rate(skfairtune_fit(args, mask, images, labels, device))
        print(f"{mask:<11}{fp32:>12.0f}{low:>12.0f}{ours:>12.0f}{ours / fp32:>8.2f}x{low / ours:>13.2f}x",
              flush=True)
    print("  vs fp32 = skfairtune images/s over the plain float32 loop's; / bf16 floor = skfairtune's time per "
          "image over the plain bf16 loop's (1.00x: at the floor; below 1: faster, e.g. the frozen cache)")
    print("  skfairtune uses float32 on the CPU (precision='auto'), so there the bf16 column is for reference")
    if device.type == "cuda":
        print(f"# peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
