"""One training step of a plain timm ViT: fused against unfused attention, float32 against bf16.

Why ``precision="bf16"`` on a CPU switches timm's attention to its explicit maths
(``skfairtune._training._precision.unfuse_attention``): torch's fused CPU
attention kernel runs its backward pass several times slower in bf16 than in
float32, which cancels most of what bf16 gains in the matmuls. This prints the
step time of the four combinations per model, one thread, CPU time, the
minimum over interleaved repeats, and bf16-unfused against float32-fused (what
a fit with ``precision="auto"`` gains over ``precision="32"`` in arithmetic).

Usage::

    python benchmarks/bench_attention.py                          # the models of docs/benchmarks.md
    python benchmarks/bench_attention.py --model 192 3 32 4       # width, heads, image size, patch
    python benchmarks/bench_attention.py --smoke                  # seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

#: (width, heads, image size, patch size), depth 12, batch 64.
DEFAULT_MODELS = ((16, 2, 16, 4), (32, 2, 32, 4), (64, 2, 32, 4), (192, 3, 32, 4), (192, 3, 64, 4), (384, 6, 64, 8))
COMBINATIONS = (("float32", False, True), ("float32", False, False), ("bf16", True, True), ("bf16", True, False))


def step_times(width: int, heads: int, image_size: int, patch_size: int, *, depth: int, batch: int,
               steps: int, repeats: int) -> dict[str, float]:
    """Milliseconds of CPU time per training step, per (precision, attention) combination."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=image_size,
                              patch_size=patch_size, embed_dim=width, depth=depth, num_heads=heads)
    attention = [layer for layer in model.modules() if isinstance(getattr(layer, "fused_attn", None), bool)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, image_size, image_size)
    y = torch.randint(0, 2, (batch,))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for precision, bf16, fused in COMBINATIONS:
            for layer in attention:
                layer.fused_attn = fused
            step(bf16)  # untimed: kernel selection and allocator warm-up
            started = time.process_time()
            for _ in range(steps):
                step(bf16)
            key = f"{precision} {'fused' if fused else 'unfused'}"
            times.setdefault(key, []).append((time.process_time() - started) / steps * 1000)
    return {key: min(values) for key, values in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny model, one repeat: seconds")
    parser.add_argument("--model", type=int, nargs=4, action="append", metavar=("WIDTH", "HEADS", "PX", "PATCH"),
                        help="a model to time (repeatable); default: the models of docs/benchmarks.md")
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per combination and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    models = [tuple(m) for m in args.model] if args.model else list(DEFAULT_MODELS)
    if args.smoke:
        models, args.depth, args.batch, args.steps, args.repeats = [(16, 2, 16, 4)], 2, 8, 1, 1
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, depth {args.depth}, batch {args.batch}; "
          "ms of CPU time per training step (minimum over repeats)")
    rows = []
    for width, heads, image_size, patch_size in models:
        times = step_times(width, heads, image_size, patch_size, depth=args.depth, batch=args.batch,
                           steps=args.steps, repeats=args.repeats)
        gain = times["float32 fused"] / times["bf16 unfused"]
        rows.append({"width": width, "heads": heads, "image_size": image_size, "patch_size": patch_size,
                     "ms": times, "bf16_unfused_vs_float32_fused": gain})
        cells = "  ".join(f"{key} {value:7.0f}" for key, value in times.items())
        print(f"width {width:4d} heads {heads} {image_size:3d} px patch {patch_size}: {cells}  "
              f"bf16 unfused vs float32 fused {gain:.2f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:] if argv is None else argv, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
