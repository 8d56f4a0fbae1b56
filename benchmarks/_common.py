"""Shared set-up of the search benchmark: configuration, data, pretrained backbone, helpers.

Everything the three contestants must share lives here, so that they differ only
in how they run the search: the same images (from the same files), the same
train / validation / test indices, the same backbone checkpoint, the same
training recipe (AdamW, warm-up + cosine per step, class-weighted loss, batch
size, epochs), the same validation objective and the same baseline masks
enqueued as the first trials.

The two non-skfairtune contestants use nothing from ``skfairtune`` at run time:
the helpers they call (mask bits to parameter names, the learning-rate factor,
the per-group AUC) are written here with numpy, torch, timm and scikit-learn
only, as a user would write them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHARED_DATA = REPO.parent / "shared" / "data"
CACHE_DIR = BENCH_DIR / ".cache"
MODEL = "vit_tiny_patch16_224"

#: Mask presets enqueued as the first trials by all three contestants, as bit strings of
#: the 36-bit ln-attn-mlp space (per block: LayerNorms, attention, MLP).
BASELINE_NAMES = ("full", "linear", "attention", "layernorm")
_UNIT_BITS = {"full": "111", "linear": "000", "attention": "010", "layernorm": "100"}


def baseline_masks(depth: int) -> dict[str, str]:
    """Bit strings of the baseline presets for a ViT of ``depth`` blocks."""
    return {name: _UNIT_BITS[name] * depth for name in BASELINE_NAMES}


@dataclass
class BenchConfig:
    """Everything that defines a benchmark run; printed in full at the start."""

    smoke: bool = False
    image_size: int = 32
    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 12
    num_heads: int = 2
    n_train: int = 1000
    n_val: int = 500
    n_test: int = 1500
    n_trials: int = 10
    max_epochs: int = 12
    batch_size: int = 64
    weight_decay: float = 0.05
    warmup_fraction: float = 1 / 3
    lr_range: tuple = (1e-5, 1e-3)
    pretrain_samples: int = 6000
    pretrain_epochs: int = 4
    pretrain_lr: float = 1e-3
    seeds: tuple = (0, 1, 2)
    threads: int = 0  # 0: one per CPU core
    split_seed: int = 0
    floor_samples: int = 1024
    floor_epochs: int = 3
    scaling_fractions: tuple = (0.25, 0.5, 1.0)
    scaling_epochs: int = 2
    contestants: tuple = ("reference", "hand_written", "hand_written_jobs2", "skfairtune", "skfairtune_jobs2")
    extra: dict = field(default_factory=dict)

    @property
    def model_kwargs(self) -> dict:
        return dict(img_size=self.image_size, patch_size=self.patch_size, embed_dim=self.embed_dim,
                    depth=self.depth, num_heads=self.num_heads)

    @classmethod
    def smoke_config(cls, **overrides) -> BenchConfig:
        """Synthetic images, a narrow 12-block ViT: the whole benchmark in well under a minute."""
        params = dict(smoke=True, image_size=16, patch_size=4, embed_dim=16, depth=12, num_heads=2,
                      n_train=160, n_val=120, n_test=120, n_trials=5, max_epochs=2, batch_size=32,
                      pretrain_samples=256, pretrain_epochs=1, seeds=(0,), floor_samples=128,
                      floor_epochs=1, scaling_epochs=1, threads=1,
                      contestants=("reference", "hand_written", "skfairtune"))
        params.update(overrides)
        return cls(**params)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        data = json.loads(text)
        for key in ("lr_range", "seeds", "scaling_fractions", "contestants"):
            data[key] = tuple(data[key])
        return cls(**data)

    def resolved_threads(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))


# --------------------------------------------------------------------------- workload
@dataclass
class Workload:
    """File paths, labels, age groups and the fixed split; the same for every contestant."""

    paths: np.ndarray
    y: np.ndarray
    groups: np.ndarray  # sensitive attribute (age group) as strings
    train: np.ndarray  # indices into paths
    val: np.ndarray
    test: np.ndarray
    source: str

    @property
    def search(self) -> np.ndarray:
        """Training + validation indices, in that order: what a search sees."""
        return np.concatenate([self.train, self.val])

    def cv(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The one validation split, as positions into ``search``."""
        n_train = len(self.train)
        return [(np.arange(n_train), np.arange(n_train, n_train + len(self.val)))]

    def save(self, path: Path) -> None:
        np.savez(path, paths=self.paths, y=self.y, groups=self.groups, train=self.train,
                 val=self.val, test=self.test, source=np.array(self.source))

    @classmethod
    def load(cls, path: Path) -> Workload:
        with np.load(path, allow_pickle=False) as data:
            return cls(paths=data["paths"], y=data["y"], groups=data["groups"], train=data["train"],
                       val=data["val"], test=data["test"], source=str(data["source"]))


def ham_available() -> bool:
    return (SHARED_DATA / "ham10000" / "HAM10000_metadata.csv").is_file()


def utkface_available() -> bool:
    return (SHARED_DATA / "utkface64" / "labels.csv").is_file()


def _stratified_split(strata: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Disjoint index sets of the given sizes, each stratified on ``strata``."""
    from sklearn.model_selection import train_test_split

    rest = np.arange(len(strata))
    parts = []
    for size in sizes:
        if size > len(rest):
            raise SystemExit(f"the data has {len(strata)} rows, too few for sizes {sizes}")
        if size == len(rest):
            part, rest = rest, rest[:0]
        else:
            part, rest = train_test_split(rest, train_size=size, stratify=strata[rest], random_state=seed)
        parts.append(np.sort(part))
    return parts


def ham_workload(cfg: BenchConfig) -> Workload:
    """HAM10000 malignant vs benign, age <=60 / >60, split stratified on label x age group."""
    from skfairtune.datasets import load_ham10000

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 36 rows without an age are dropped
        data = load_ham10000(SHARED_DATA / "ham10000", sensitive="age", load_images=False)
    y = np.asarray(data.target, dtype=np.int64)
    groups = data.sensitive_features["age"].astype(str).to_numpy()
    strata = np.char.add(y.astype(str), groups.astype(str))
    train, val, test = _stratified_split(strata, (cfg.n_train, cfg.n_val, cfg.n_test), cfg.split_seed)
    return Workload(np.asarray(data.paths, dtype=str), y, groups.astype(str), train, val, test,
                    source=f"HAM10000 ({SHARED_DATA / 'ham10000'})")


def synthetic_workload(cfg: BenchConfig, folder: Path) -> Workload:
    """make_biased_images written as PNG files, so the reference still decodes files."""
    from PIL import Image

    from skfairtune.datasets import make_biased_images

    n = cfg.n_train + cfg.n_val + cfg.n_test
    data = make_biased_images(n, image_size=max(cfg.image_size, 16), random_state=cfg.split_seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(data.images):
        path = folder / f"img_{i:05d}.png"
        if not path.exists():
            Image.fromarray(image).save(path)
        paths.append(str(path))
    y = np.asarray(data.target, dtype=np.int64)
    groups = data.sensitive_features["group"].astype(str).to_numpy()
    strata = np.char.add(y.astype(str), groups.astype(str))
    train, val, test = _stratified_split(strata, (cfg.n_train, cfg.n_val, cfg.n_test), cfg.split_seed)
    return Workload(np.asarray(paths, dtype=str), y, groups.astype(str), train, val, test,
                    source="synthetic make_biased_images (smoke)")


# --------------------------------------------------------------------------- backbone
def _checkpoint_name(cfg: BenchConfig, source: str) -> str:
    key = json.dumps([MODEL, cfg.model_kwargs, source, cfg.pretrain_samples, cfg.pretrain_epochs,
                      cfg.pretrain_lr], sort_keys=True)
    return f"backbone-{source}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.pth"


def pretrain_backbone(cfg: BenchConfig, cache_dir: Path, *, log=print) -> tuple[Path, float]:
    """Pre-train the ViT on data disjoint from the task; return (checkpoint, seconds spent).

    Full mode: utkface64 faces, race x gender (10 classes). Smoke mode (or
    without utkface64): skfairtune's synthetic pattern task. The checkpoint is a
    plain state dict with the 10-class head; the fine-tuning code drops that
    head, as it would for any foreign checkpoint. Cached by configuration.
    """
    import torch
    import timm

    use_faces = not cfg.smoke and utkface_available()
    source = "utkface64" if use_faces else "synthetic"
    path = cache_dir / _checkpoint_name(cfg, source)
    if path.is_file():
        log(f"backbone: cached {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        return path, 0.0
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if use_faces:
        import pandas as pd
        from skfairtune._images._decode import decode_images

        labels = pd.read_csv(SHARED_DATA / "utkface64" / "labels.csv")
        labels = labels.sample(n=min(cfg.pretrain_samples, len(labels)), random_state=0)
        images = decode_images([SHARED_DATA / "utkface64" / "images" / f for f in labels["file"]],
                               size=cfg.image_size)
        target = (labels["race"].to_numpy() * 2 + labels["gender"].to_numpy()).astype(np.int64)
    else:
        from skfairtune.datasets import make_pretraining_images

        data = make_pretraining_images(cfg.pretrain_samples, image_size=cfg.image_size, n_classes=4,
                                       random_state=0)
        images, target = data.images, np.asarray(data.target, dtype=np.int64)
    n_classes = int(target.max()) + 1
    torch.manual_seed(0)
    model = timm.create_model(MODEL, pretrained=False, num_classes=n_classes, **cfg.model_kwargs)
    X = normalize_images(torch.from_numpy(images).permute(0, 3, 1, 2))
    y = torch.from_numpy(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.05)
    batch = 128
    total = cfg.pretrain_epochs * math.ceil(len(X) / batch)
    step = 0
    model.train()
    for epoch in range(cfg.pretrain_epochs):
        order = torch.randperm(len(X))
        running = 0.0
        for first in range(0, len(X), batch):
            index = order[first:first + batch]
            for group in optimizer.param_groups:
                group["lr"] = cfg.pretrain_lr * lr_factor(step, total, max(1, total // 10))
            images_b = X[index]
            flip = torch.rand(len(index), 1, 1, 1) < 0.5
            loss = torch.nn.functional.cross_entropy(model(torch.where(flip, images_b.flip(-1), images_b)),
                                                     y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(index)
            step += 1
        log(f"backbone: pretraining on {source} ({len(X)} images, {n_classes} classes) "
            f"epoch {epoch + 1}/{cfg.pretrain_epochs} loss {running / len(X):.3f}")
    torch.save(model.state_dict(), path)
    return path, time.perf_counter() - started


# --------------------------------------------------------------------------- shared recipe
# timm's pretrained_cfg of vit_tiny_patch16_224 (what skfairtune reads from the model too).
VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)


def normalize_images(images_uint8):
    """uint8 (N, 3, H, W) tensor to float, normalised with the ViT's mean / std."""
    import torch

    mean = torch.tensor(VIT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(VIT_STD).view(1, 3, 1, 1)
    return (images_uint8.float() / 255.0 - mean) / std


def load_image(path, size: int) -> np.ndarray:
    """Decode one file to a (size, size, 3) uint8 array.

    The same Pillow calls as skfairtune's decoder (JPEG draft-mode shrink, then
    Lanczos with ``reducing_gap=2``), so that all three contestants train on
    pixel-identical images.
    """
    from PIL import Image

    with Image.open(path) as img:
        img.draft(None, (2 * size, 2 * size))
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up then cosine decay to zero, per optimizer step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def balanced_class_weights(y: np.ndarray) -> np.ndarray:
    """scikit-learn's "balanced" weights: n_samples / (n_classes * count)."""
    counts = np.bincount(y, minlength=2)
    return len(y) / (len(counts) * counts)


def trainable(name: str, bits: str) -> bool:
    """Whether parameter ``name`` of a timm ViT is trained under a 36-bit ln-attn-mlp mask."""
    if name.startswith("head."):
        return True
    if not name.startswith("blocks."):
        return False  # patch_embed, pos_embed, cls_token, final norm stay frozen (paper)
    block, unit = name.split(".")[1:3]
    b = int(block)
    if unit in ("norm1", "norm2"):
        return bits[3 * b] == "1"
    if unit in ("attn", "ls1"):
        return bits[3 * b + 1] == "1"
    if unit in ("mlp", "ls2"):
        return bits[3 * b + 2] == "1"
    return False


def group_aucs(y_true: np.ndarray, score: np.ndarray, groups: np.ndarray) -> dict:
    """Overall AUC and per-group AUC over the whole set (scikit-learn's roc_auc_score)."""
    from sklearn.metrics import roc_auc_score

    out = {"overall": float(roc_auc_score(y_true, score))}
    for g in np.unique(groups):
        sel = groups == g
        both_classes = len(np.unique(y_true[sel])) == 2
        out[str(g)] = float(roc_auc_score(y_true[sel], score[sel])) if both_classes else float("nan")
    return out


def paired_t_interval(diffs, target=0.02):
    """(mean, 95% t-interval low, high, power to detect +target, n) of paired differences (folds, seeds)."""
    from scipy import stats

    diffs = np.asarray([d for d in diffs if d is not None and np.isfinite(d)], dtype=float)
    n = len(diffs)
    if n < 2:
        return (float(diffs.mean()) if n else float("nan"), float("nan"), float("nan"), float("nan"), n)
    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    # Power of the two-sided paired t-test at level 0.05 against a true mean difference of +target.
    critical = stats.t.ppf(0.975, n - 1)
    noncentrality = target / (sd / np.sqrt(n)) if sd > 0 else np.inf
    # scipy's noncentral t returns nan for some tails far below 1e-15 (e.g. 3 folds, noncentrality 14);
    # such a tail adds nothing to the power, so it counts as 0 rather than turning the power into nan.
    upper = stats.nct.sf(critical, n - 1, noncentrality)
    lower = stats.nct.cdf(-critical, n - 1, noncentrality)
    power = float(np.clip(np.nan_to_num(upper, nan=float(stats.norm.sf(critical - noncentrality)))
                          + np.nan_to_num(lower, nan=0.0), 0.0, 1.0))
    return mean, mean - half, mean + half, power, n


def corrected_cv_interval(diffs, test_to_train):
    """95 % t-interval of the mean paired difference over cross-validation folds, widened for shared training data.

    Folds of one cross-validation train on overlapping data, so their differences are positively
    correlated and the plain t-interval is too narrow. The corrected resampled t-test (Nadeau and
    Bengio 2003; Bouckaert and Frank 2004 for repeated k-fold) replaces the variance factor 1/n by
    1/n + n_test/n_train, which widens the plain interval by sqrt(1 + n * n_test/n_train).
    Returns (low, high); nan below two differences.
    """
    mean, low, high, _, n = paired_t_interval(diffs)
    half = (high - low) / 2 * np.sqrt(1 + n * test_to_train)
    return mean - half, mean + half


def min_group_auc(y_true, score, groups) -> float:
    aucs = group_aucs(np.asarray(y_true), np.asarray(score), np.asarray(groups))
    return min(v for k, v in aucs.items() if k != "overall")


def reseed_sampler(sampler, seed: int, slot: int) -> None:
    """Seed the sampler's random states from ``(seed, slot)`` before a trial samples.

    FairTuneSearchCV does this before every trial (so a trial's draws depend on
    its slot only, whichever worker runs it). The other contestants do the same
    so that all three draw identical masks and learning rates wherever TPE
    samples at random (its start-up trials): the comparison then holds the
    sampled trials fixed. A sampling detail, not a speed lever.
    """
    from optuna.samplers import BaseSampler
    from optuna.samplers._lazy_random_state import LazyRandomState

    states = []

    def visit(obj, depth):
        for value in vars(obj).values():
            if isinstance(value, LazyRandomState):
                states.append(value)
            elif isinstance(value, BaseSampler) and depth < 3:
                visit(value, depth + 1)

    visit(sampler, 0)
    for state, child in zip(states, np.random.SeedSequence([int(seed) % 2**32, slot]).spawn(len(states))):
        state.rng.seed(int(child.generate_state(1)[0]))


def peak_rss_mb() -> float:
    """Peak resident memory of this process plus its largest child so far (Linux reports KiB)."""
    return sum(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def emit(result: dict) -> None:
    """Worker output: one JSON line the driver picks out of stdout."""
    sys.stdout.write("@@RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def finish_report(report: dict, started: float, json_path: Path | None, *, blank_line: bool = False) -> None:
    """Close a driver's report: total wall time and load (other load skews timings), then its JSON file."""
    report["total_s"] = time.perf_counter() - started
    gap = "\n" if blank_line else ""
    print(f"{gap}# total wall time: {report['total_s']:.0f} s; load average at end: "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if json_path:
        json_path.write_text(json.dumps(report, indent=1))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
