"""Make the small pre-trained ViT that ``skfairtune demo`` fine-tunes.

The demo must run offline, so its backbone ships inside the package
(``skfairtune/_assets/demo_vit.safetensors``, about 0.6 MB, and
``demo_vit.json`` saying how it was made). This script re-creates both from
the package's own synthetic pattern task
(:func:`skfairtune.datasets.make_pretraining_images`), a different task from
the biased one the demo fine-tunes on::

    python scripts/make_demo_backbone.py            # a few minutes on 2 CPU cores

It is deterministic on the CPU for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skfairtune.demo import DEMO_BACKBONE, pretrain_backbone  # noqa: E402

_MAX_BYTES = 3 * 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEMO_BACKBONE.parent),
                        help="folder for demo_vit.safetensors and demo_vit.json (default: the package's _assets)")
    parser.add_argument("--n-samples", type=int, default=8000, help="pre-training images (default 8000)")
    parser.add_argument("--epochs", type=int, default=25, help="pre-training epochs (default 25)")
    parser.add_argument("--n-classes", type=int, default=8, help="pattern classes (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    # Deterministic, and one thread is fastest for this tiny model on a busy machine.
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / DEMO_BACKBONE.name
    started = time.perf_counter()
    info = pretrain_backbone(weights, n_samples=args.n_samples, epochs=args.epochs, n_classes=args.n_classes,
                             random_state=args.seed, verbose=1)
    info["script"] = "scripts/make_demo_backbone.py"
    info["seconds"] = round(time.perf_counter() - started)
    (out / "demo_vit.json").write_text(json.dumps(info, indent=2) + "\n")
    size = weights.stat().st_size
    print(f"wrote {weights} ({size / 2**20:.2f} MiB), held-out accuracy {info['held_out_accuracy']:.3f} "
          f"on {args.n_classes} classes, in {info['seconds']} s")
    if size > _MAX_BYTES:
        print(f"error: {weights} is over {_MAX_BYTES // 2**20} MiB; choose a smaller architecture.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
