"""A roofline for training: this machine's matmul peak against the FLOP/s a fit achieves.

Two parts, one run:

1. **Peak.** The best of a few large square ``torch.mm`` (float32, and bf16
   where the CPU has it), with one thread and with all cores: the most
   arithmetic this machine's BLAS (oneDNN / MKL) delivers.
2. **A fit.** ``FairTuneClassifier(precision="auto", mask="full")`` on synthetic
   images at widths 64, 192 and 384 (depth 12). Its training FLOPs are counted
   exactly with ``torch.utils.flop_counter`` on one training step of the same
   model (forward and backward; attention counted through its unfused maths,
   as the fused CPU kernel is not registered with the counter), times the steps
   of the fit. Achieved FLOP/s is that over the fit's wall time, everything
   included (model copy, conversion, optimiser); the share is against the peak
   of the precision the fit used (``precision_``) at the fit's thread count.

On a shared machine the peak and the fits are measured in the same run, and
each figure is the best of ``--repeats`` (background load only slows a run
down). With one thread, times are the process's CPU time (``time.process_time``):
what a dedicated core would take, where wall time also counts the time the
scheduler gave other jobs; the all-core peak is wall time. Width 384 runs at 64 px with patch 8 (65 tokens, as the 32 px / patch 4
models), so all widths see the same sequence length.

Usage::

    python benchmarks/bench_roofline.py            # widths 64 192 384, 1 thread for the fits
    python benchmarks/bench_roofline.py --smoke    # seconds; checks the script, not the speed
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from skfairtune import FairTuneClassifier  # noqa: E402
from skfairtune._training._precision import cpu_has_native_bf16  # noqa: E402
from skfairtune.datasets import make_biased_images  # noqa: E402

MODEL = "vit_tiny_patch16_224"
#: (width, image size, patch): 65 tokens each.
GEOMETRY = {64: (32, 4), 192: (32, 4), 384: (64, 8)}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def matmul_peak(dtype: torch.dtype, threads: int, sizes=(512, 1024, 2048), repeats: int = 3) -> float:
    """Best FLOP/s of square ``torch.mm`` over ``sizes`` and ``repeats`` (CPU time with one thread)."""
    clock = time.process_time if threads == 1 else time.perf_counter
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    try:
        for n in sizes:
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            torch.mm(a, b)  # kernel selection and first-touch out of the timing
            calls = max(1, int(2e9 // (2 * n ** 3)))  # about 2 GFLOP a timing
            for _ in range(repeats):
                start = clock()
                for _ in range(calls):
                    torch.mm(a, b)
                best = max(best, 2 * n ** 3 * calls / max(clock() - start, 1e-9))
    finally:
        torch.set_num_threads(previous)
    return best


def model_kwargs(width: int, depth: int, smoke: bool) -> dict:
    img, patch = (16, 4) if smoke else GEOMETRY.get(width, (32, 4))
    return dict(img_size=img, patch_size=patch, embed_dim=width, depth=depth, num_heads=max(1, width // 64))


def train_flops_per_image(kwargs: dict, batch: int = 8) -> float:
    """Forward + backward FLOPs of one image through the whole model (every weight trains)."""
    model = timm.create_model(MODEL, pretrained=False, num_classes=2, **kwargs)
    for block in model.blocks:
        block.attn.fused_attn = False  # the counter sees the attention's two matmuls this way
    x = torch.randn(batch, 3, kwargs["img_size"], kwargs["img_size"])
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch


def fit_seconds(kwargs: dict, data, args) -> tuple[float, str]:
    clf = FairTuneClassifier(MODEL, pretrained=False, mask="full", precision=args.precision, device="cpu",
                             max_epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, random_state=0,
                             model_kwargs=copy.deepcopy(kwargs))
    clock = time.process_time if args.threads == 1 else time.perf_counter
    start = clock()
    clf.fit(data.images, data.target)
    return clock() - start, clf.precision_


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 192, 384])
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the fits")
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.widths, args.depth, args.n_images, args.batch_size, args.epochs, args.repeats = [16, 32], 2, 32, 16, 1, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    n_cores = cores()
    bf16 = cpu_has_native_bf16()
    sizes = (256,) if args.smoke else (512, 1024, 2048)
    peaks = {}
    for threads in sorted({1, n_cores}):
        peaks[("32", threads)] = matmul_peak(torch.float32, threads, sizes, args.repeats)
        peaks[("bf16", threads)] = matmul_peak(torch.bfloat16, threads, sizes, args.repeats)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {n_cores} cores, "
          f"native bf16: {bf16}")
    print("matmul peak (best square torch.mm):")
    for (precision, threads), flops in sorted(peaks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"  {precision:>4} {threads} thread(s): {flops / 1e9:8.1f} GFLOP/s")
    torch.set_num_threads(args.threads)
    print(f"fits: FairTuneClassifier(precision={args.precision!r}, mask='full'), depth {args.depth}, "
          f"{args.n_images} images, batch {args.batch_size}, {args.epochs} epoch(s), {args.threads} thread(s), "
          f"best of {args.repeats}" + ("; CPU seconds" if args.threads == 1 else "; wall seconds"))
    print(f"{'width':>5} {'px/patch':>8} {'prec':>5} {'MFLOP/img':>10} {'fit s':>7} {'GFLOP/s':>8} "
          f"{'peak':>8} {'share':>6}")
    rows = []
    for width in args.widths:
        kwargs = model_kwargs(width, args.depth, args.smoke)
        data = make_biased_images(args.n_images, image_size=kwargs["img_size"], random_state=0)
        per_image = train_flops_per_image(kwargs)
        fit_seconds(kwargs, data, args)  # untimed: one-time costs out of the figure
        timings = [fit_seconds(kwargs, data, args) for _ in range(args.repeats)]
        seconds, used = min(timings)
        achieved = per_image * args.n_images * args.epochs / seconds
        peak = peaks[(used, min(args.threads, n_cores))] if (used, min(args.threads, n_cores)) in peaks \
            else peaks[(used, 1)] * args.threads
        row = dict(width=width, geometry=f"{kwargs['img_size']}/{kwargs['patch_size']}", precision=used,
                   mflop_per_image=per_image / 1e6, fit_s=seconds, gflops=achieved / 1e9,
                   peak_gflops=peak / 1e9, share=achieved / peak)
        rows.append(row)
        print(f"{width:>5} {row['geometry']:>8} {used:>5} {row['mflop_per_image']:>10.1f} {seconds:>7.2f} "
              f"{row['gflops']:>8.1f} {row['peak_gflops']:>8.1f} {row['share']:>6.0%}", flush=True)
    for row in rows:
        print(f"width {row['width']}: {row['share']:.0%} of the {row['precision']} matmul peak "
              f"({row['gflops']:.1f} of {row['peak_gflops']:.1f} GFLOP/s)")
    if args.json:
        args.json.write_text(json.dumps({
            "peaks_gflops": {f"{p} x{t}": v / 1e9 for (p, t), v in peaks.items()}, "rows": rows,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
