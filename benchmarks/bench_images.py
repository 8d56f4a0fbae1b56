"""Scale benchmark: a CheXpert-sized set of image files, searched on a subsample, refit on all.

Generates N synthetic 224 px JPEG files on local disk (200,000 by default, the size of
CheXpert), then:

1. decodes a sample with a plain Pillow loop (one thread) and with skfairtune's decoder
   (one thread), for decode throughput per core;
2. decodes every file once, in parallel, into the memory-mapped image cache at the
   model's input size (timm preprocessing: shorter side to size / crop_pct, centre crop);
3. runs ``FairTuneSearchCV(subsample=..., ...)`` on the file paths (served by the cache);
4. refits the best trial on all files (served by the cache, streamed in batches).

It prints the time of every stage, the decode throughput against the plain loop, the
peak resident memory (``ru_maxrss``, which counts memory-mapped pages the OS could evict)
and the peak anonymous memory (``RssAnon``, sampled: what the process itself holds).

    python benchmarks/bench_images.py                      # 200,000 files
    python benchmarks/bench_images.py --n-files 20000      # a tenth of it
    python benchmarks/bench_images.py --smoke              # 400 files, seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _anon_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024
    except (OSError, StopIteration):
        return float("nan")


class AnonPeak:
    """Samples RssAnon every few milliseconds in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak, self._stop = interval, _anon_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _anon_mb())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _write_one(args) -> None:
    from PIL import Image

    path, seed, label = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:224, :224].astype(np.float32)
    base = rng.uniform(40, 200) + 30 * np.sin(xx / rng.uniform(8, 30)) * np.cos(yy / rng.uniform(8, 30))
    image = np.repeat(base[..., None], 3, axis=2)
    if label:  # a bright blob: something to learn
        cy, cx = rng.integers(60, 164, 2)
        image += 80 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)[..., None] / 400)
    image += rng.normal(0, 6, image.shape)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_files(folder: Path, n_files: int, seed: int, n_jobs: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """N JPEGs (reused when the folder already holds them), labels and a sensitive group."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, n_files)
    # The label is more frequent in group 1: a biased set, as in the library's demo.
    labels = (rng.random(n_files) < np.where(groups == 1, 0.4, 0.2)).astype(int)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"{i // 10000:03d}" / f"{i:06d}.jpg") for i in range(n_files)]
    for sub in {Path(p).parent for p in paths}:
        sub.mkdir(exist_ok=True)
    todo = [(p, seed * 1_000_003 + i, labels[i]) for i, p in enumerate(paths) if not os.path.exists(p)]
    with ThreadPoolExecutor(n_jobs) as pool:
        list(pool.map(_write_one, todo, chunksize=64))
    return paths, labels, groups


def plain_pillow_loop(paths: list[str], size: int, crop_pct: float) -> float:
    """Images/s of the obvious loop: open, draft, RGB, resize shorter side, centre crop."""
    from PIL import Image

    scale = int(size / crop_pct)
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            img.draft("RGB", (2 * scale, 2 * scale))
            img = img.convert("RGB")
        w, h = img.size
        new = (scale, max(scale, int(h * scale / w))) if w <= h else (max(scale, int(w * scale / h)), scale)
        img = img.resize(new, Image.Resampling.BICUBIC, reducing_gap=2.0)
        left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
        np.asarray(img.crop((left, top, left + size, top + size)))
    return len(paths) / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-files", type=int, default=200_000)
    parser.add_argument("--img-size", type=int, default=32, help="model input size (px)")
    parser.add_argument("--subsample", type=float, default=0.02)
    parser.add_argument("--n-trials", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--refit-epochs", type=int, default=1)
    parser.add_argument("--sample", type=int, default=3000, help="files in the per-core decode comparison")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "skfairtune-bench-images")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--smoke", action="store_true", help="400 files, 1 epoch: seconds")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--clean", action="store_true", help="delete the generated files at the end")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_files, args.sample, args.n_trials, args.max_epochs, args.subsample = 400, 100, 2, 1, 0.25

    import torch

    torch.set_num_threads(args.threads)
    from skfairtune import FairTuneClassifier, FairTuneSearchCV
    from skfairtune._training._template import ModelTemplate
    from skfairtune._images._filecache import ImageCache
    from skfairtune._images._decode import decode_images

    report = {"config": vars(args) | {"workdir": str(args.workdir), "json": None}, "stages": {}}
    stages = report["stages"]
    files_dir = args.workdir / f"jpeg-{args.n_files}"
    cache_dir = args.workdir / f"cache-{args.n_files}-{os.getpid()}"

    started = time.perf_counter()
    paths, y, groups = make_files(files_dir, args.n_files, seed=0, n_jobs=args.threads)
    stages["generate_s"] = time.perf_counter() - started
    print(f"files: {len(paths):,} JPEGs of 224 px in {files_dir} ({stages['generate_s']:.1f} s, "
          f"reused when present)", flush=True)

    clf = FairTuneClassifier(
        "vit_tiny_patch16_224", pretrained=False, max_epochs=args.max_epochs, batch_size=256,
        model_kwargs=dict(img_size=args.img_size, patch_size=4, embed_dim=32, depth=4, num_heads=2),
        lr=1e-3, image_cache=str(cache_dir), random_state=0,
    )
    # The classifier's own preprocessing, without fitting: the model's timm data config.
    geometry = ModelTemplate(clf.get_params(), n_classes=2, seed=0).geometry

    # 1. Per-core decode throughput on the same files, warm page cache for both.
    sample = paths[: min(args.sample, len(paths))]
    decode_images(sample[:50], size=geometry.size, crop_pct=geometry.crop_pct,
                  interpolation=geometry.interpolation, keep_depth=True, n_jobs=1)
    plain = plain_pillow_loop(sample, args.img_size, geometry.crop_pct)
    t0 = time.perf_counter()
    decode_images(sample, size=geometry.size, crop_pct=geometry.crop_pct,
                  interpolation=geometry.interpolation, keep_depth=True, n_jobs=1)
    ours_one = len(sample) / (time.perf_counter() - t0)
    stages.update(plain_loop_img_s=plain, ours_one_thread_img_s=ours_one)
    print(f"decode, one thread, {len(sample):,} files: plain Pillow loop {plain:,.0f} img/s, "
          f"skfairtune {ours_one:,.0f} img/s (plain/ours {plain / ours_one:.2f}x)", flush=True)

    with AnonPeak() as anon:
        anon_start = _anon_mb()
        # 2. Decode every file once into the memory-mapped cache (what the search does first).
        t0 = time.perf_counter()
        cache = ImageCache(cache_dir)
        mapped = cache.decode(paths, geometry)
        stages["decode_all_s"] = time.perf_counter() - t0
        stages["decode_all_img_s"] = len(paths) / stages["decode_all_s"]
        stages["cache_mb"] = mapped.nbytes / 2**20
        del mapped
        print(f"decode all, {args.threads} threads, into the memory-mapped cache: "
              f"{stages['decode_all_s']:.1f} s ({stages['decode_all_img_s']:,.0f} img/s), "
              f"{stages['cache_mb']:,.0f} MB on disk", flush=True)

        # 3. The search on a subsample, served by the cache.
        search = FairTuneSearchCV(clf, n_trials=args.n_trials, subsample=args.subsample, cv=2, mask_space="block",
                                  scoring="min_group_auc", baselines=None, refit=False, random_state=0)
        t0 = time.perf_counter()
        search.fit(paths, y, sensitive_features=groups)
        stages["search_s"] = time.perf_counter() - t0
        print(f"search: {args.n_trials} trials x {args.max_epochs} epochs on subsample={args.subsample} "
              f"({int(round(args.subsample * len(paths))):,} images, 2 folds): {stages['search_s']:.1f} s, "
              f"best min-group AUC {search.best_score_:.3f}", flush=True)

        # 4. Refit the best on all files: streamed in batches from the cache.
        best = clf.set_params(**search.best_params_, mask_space="block", max_epochs=args.refit_epochs)
        t0 = time.perf_counter()
        best.fit(paths, y)
        stages["refit_s"] = time.perf_counter() - t0
        report["best_mask"], report["refit_frozen_prefix"] = best.mask_.to_string(), int(best.frozen_prefix_)
        # Frozen-prefix activations are held in memory (bounded by frozen_cache_max_mb).
        tokens, width = (args.img_size // 4) ** 2 + 1, 32
        report["activations_mb"] = len(paths) * tokens * width * 4 / 2**20 if best.frozen_prefix_ else 0.0
        print(f"refit on all {len(paths):,} images, {args.refit_epochs} epoch(s): {stages['refit_s']:.1f} s "
              f"(mask {report['best_mask']}, {report['refit_frozen_prefix']} frozen half-blocks served from "
              f"{report['activations_mb']:,.0f} MB of cached activations)", flush=True)
    # One entry: the search, its folds and trials and the refit all read the same decode.
    report["cache_entries"] = len(list(cache_dir.glob("*.npy")))
    stages["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stages["anon_start_mb"] = anon_start
    stages["peak_anon_mb"] = anon.peak
    print(f"cache entries after search and refit: {report['cache_entries']} (decoded once)")
    print(f"peak RSS (ru_maxrss, counts evictable mapped pages): {stages['peak_rss_mb']:,.0f} MB; "
          f"peak anonymous memory: {anon.peak:,.0f} MB (at start of stage 2: {anon_start:,.0f} MB)")
    print(f"per-core decode: plain loop / skfairtune = {plain / ours_one:.2f}x (target <= 1.2x)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(cache_dir, ignore_errors=True)
    if args.clean:
        shutil.rmtree(files_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
