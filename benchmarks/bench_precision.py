"""``precision="auto"`` against ``precision="32"``: the fit-time ratio per model width, one run.

Both contestants are the same ``FairTuneClassifier`` (full fine-tuning, so the
whole ViT trains and no frozen-prefix cache hides the arithmetic), on the same
synthetic images with the same seed; only ``precision`` differs. Their repeats
are interleaved (the order alternates every repeat), so background load on a
shared machine falls on both alike; the ratio is the median fit time of
``"32"`` over the median of ``"auto"``, with the per-repeat paired ratios beside
it. Each row also prints ``precision_``, the precision ``"auto"`` resolved to.
With one thread, the fit's CPU time (``time.process_time``) is printed too: on
a machine other jobs share it is what a dedicated core would take, where wall
time also counts the time the scheduler gave to others.

Usage::

    python benchmarks/bench_precision.py                # widths 64 and 192, depth 12, 32 px, 1 thread
    python benchmarks/bench_precision.py --widths 384 --image-size 64 --patch-size 8
    python benchmarks/bench_precision.py --smoke        # seconds; checks the script, not the speed

Goal (issue 25), on a CPU with native bf16: width 192 at least 1.6x, width 64
no slower than float32.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from skfairtune import FairTuneClassifier  # noqa: E402
from skfairtune._training._precision import BF16_MIN_WIDTH, cpu_has_native_bf16  # noqa: E402
from skfairtune.datasets import make_biased_images  # noqa: E402

CONTESTANTS = ("auto", "32")


def heads_for(width: int) -> int:
    """ViT-Tiny's 64-wide heads (3 at width 192, 6 at 384); at least one."""
    return max(1, width // 64)


def make_classifier(precision: str, width: int, args) -> FairTuneClassifier:
    return FairTuneClassifier(
        "vit_tiny_patch16_224", pretrained=False, mask="full", precision=precision,
        max_epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, random_state=0, device="cpu",
        model_kwargs=dict(img_size=args.image_size, patch_size=args.patch_size, embed_dim=width,
                          depth=args.depth, num_heads=heads_for(width)))


def time_fit(precision: str, width: int, data, args) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fit, and the precision it used."""
    clf = make_classifier(precision, width, args)
    start, start_cpu = time.perf_counter(), time.process_time()
    clf.fit(data.images, data.target)
    return time.perf_counter() - start, time.process_time() - start_cpu, clf.precision_


def time_plain(precision: str, width: int, data, args) -> tuple[float, float, str]:
    """Wall and CPU seconds of the same epochs as a plain timm + AdamW loop (the machine's own bf16 gain)."""
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=args.image_size,
                              patch_size=args.patch_size, embed_dim=width, depth=args.depth,
                              num_heads=heads_for(width))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.as_tensor(data.images).permute(0, 3, 1, 2).float().div(255)
    labels = torch.as_tensor(data.target, dtype=torch.long)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(args.epochs):
        for i in range(0, len(images), args.batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(images[i:i + args.batch_size]).float(),
                                                         labels[i:i + args.batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start, time.process_time() - start_cpu, precision


def bench_width(width: int, data, args) -> dict:
    # One untimed fit each first: one-time costs (allocator, oneDNN kernel selection) out of the timings.
    def precision_of(contestant: str) -> str:
        return args.contender if contestant == "auto" else contestant

    for precision in CONTESTANTS:
        time_fit(precision_of(precision), width, data, args)
    times = {precision: [] for precision in CONTESTANTS}
    cpu = {precision: [] for precision in CONTESTANTS}
    resolved = {}
    for repeat in range(args.repeats):
        order = CONTESTANTS if repeat % 2 == 0 else CONTESTANTS[::-1]
        for precision in order:
            seconds, cpu_seconds, resolved[precision] = time_fit(precision_of(precision), width, data, args)
            times[precision].append(seconds)
            cpu[precision].append(cpu_seconds)
    median = {precision: statistics.median(values) for precision, values in times.items()}
    median_cpu = {precision: statistics.median(values) for precision, values in cpu.items()}
    paired = [f32 / auto for f32, auto in zip(times["32"], times["auto"])]
    plain = {}
    if args.plain:  # after the contestants, interleaved among themselves
        plain_cpu = {"32": [], "bf16": []}
        for repeat in range(args.repeats):
            for precision in (("32", "bf16") if repeat % 2 == 0 else ("bf16", "32")):
                plain_cpu[precision].append(time_plain(precision, width, data, args)[1])
        plain = {"plain_cpu_s": plain_cpu, "plain_bf16_cpu_speedup":
                 statistics.median(plain_cpu["32"]) / statistics.median(plain_cpu["bf16"])}
    return {**plain, "width": width, "heads": heads_for(width), "times_s": times, "cpu_s": cpu, "median_s": median,
            "median_cpu_s": median_cpu, "speedup": median["32"] / median["auto"],
            "cpu_speedup": median_cpu["32"] / median_cpu["auto"], "paired_speedups": paired,
            "auto_resolved_to": resolved["auto"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models and data: seconds")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 192])
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plain", action="store_true",
                        help="also time a plain timm loop in float32 and bf16: what bf16 gains on this machine now")
    parser.add_argument("--contender", choices=("auto", "bf16"), default="auto",
                        help="the precision timed against '32': 'bf16' forces bf16 at every width "
                             "(how BF16_MIN_WIDTH is chosen)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.widths, args.depth, args.image_size, args.n_images = [16, 128], 2, 16, 64
        args.batch_size, args.repeats = 32, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = make_biased_images(args.n_images, image_size=args.image_size, random_state=0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"native bf16: {cpu_has_native_bf16()}; auto uses bf16 from width {BF16_MIN_WIDTH}; "
          f"contender: precision={args.contender!r}")
    print(f"depth {args.depth}, {args.image_size} px, patch {args.patch_size}, {args.n_images} images, "
          f"batch {args.batch_size}, {args.epochs} epoch(s), full fine-tuning; "
          f"{args.repeats} interleaved repeats, median fit time")
    rows = []
    print(f"{'width':>5} {args.contender + ' ->':>7} {'fp32 s':>8} {'auto s':>8} {'speedup':>8} {'CPU-time':>8}  paired (wall)")
    for width in args.widths:
        row = bench_width(width, data, args)
        rows.append(row)
        paired = " ".join(f"{r:.2f}" for r in row["paired_speedups"])
        print(f"{width:>5} {row['auto_resolved_to']:>7} {row['median_s']['32']:>8.2f} "
              f"{row['median_s']['auto']:>8.2f} {row['speedup']:>7.2f}x {row['cpu_speedup']:>7.2f}x  {paired}",
              flush=True)
    for row in rows:
        print(f"precision={args.contender!r} vs '32' at width {row['width']}: speedup {row['speedup']:.2f}x wall, "
              f"{row['cpu_speedup']:.2f}x CPU time ({args.contender} used {row['auto_resolved_to']})"
              + (f"; a plain timm loop gains {row['plain_bf16_cpu_speedup']:.2f}x CPU time from bf16 here"
                 if "plain_bf16_cpu_speedup" in row else ""))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
