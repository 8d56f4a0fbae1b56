"""Contestant 1: a search structured like the public FairTune code (Raman1121/FairTune).

Per trial, as its ``search_mask.py`` objective does: rebuild the datasets and
data loaders, rebuild the model from the checkpoint, apply the mask, train for
every epoch with JPEGs decoded (and resized) on every access, evaluate the
validation set after each epoch batch by batch (per-group AUC per batch, then
averaged), and report to the pruner once, after training.

Deliberate departures, so the comparison is about the pipeline only:

* The training recipe is the benchmark's shared one (AdamW, per-step warm-up +
  cosine, class-weighted loss, no augmentation), not the reference's configs.
* Mask bits are sampled with ``suggest_categorical`` under the same names as
  the other contestants (the reference uses ``suggest_int("Mask Idx i", 0, 1)``),
  and the sampler is seeded (the reference sets no seed): with the same seed all
  three contestants then draw the same masks and learning rates during TPE's
  start-up trials.
* Batches where a group has a single class give a NaN AUC; the reference lets
  it into the average, here it is skipped (``nanmean``) so trials do not fail.
* ``num_workers=0``: on 2 cores, loader processes would compete with training.
* Files are decoded the way skfairtune decodes them (JPEG draft mode, then
  Lanczos) so that all contestants see pixel-identical images; the reference
  decodes at full size and then resizes, which costs more, so its decoding time
  is if anything understated here.

Uses no skfairtune code.
"""

from __future__ import annotations

import time

import numpy as np
import optuna
import torch
import timm
from sklearn.metrics import roc_auc_score

from _common import (
    MODEL,
    BenchConfig,
    Workload,
    balanced_class_weights,
    baseline_masks,
    group_aucs,
    load_image,
    lr_factor,
    normalize_images,
    reseed_sampler,
    trainable,
)

BIT_NAMES = lambda depth: [f"mask__blocks.{b}.{u}" for b in range(depth) for u in ("ln", "attn", "mlp")]  # noqa: E731


class JpegDataset(torch.utils.data.Dataset):
    """Decode and resize the image file on every access, as the reference's datasets do."""

    def __init__(self, paths, labels, groups, size: int):
        self.paths, self.labels, self.groups, self.size = list(paths), labels, groups, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        pixels = torch.from_numpy(load_image(self.paths[i], self.size).copy()).permute(2, 0, 1)[None]
        return normalize_images(pixels)[0], int(self.labels[i]), i


def _build_model(cfg: BenchConfig, checkpoint: str, bits: str) -> torch.nn.Module:
    model = timm.create_model(MODEL, pretrained=True, num_classes=2,
                              pretrained_cfg_overlay=dict(file=checkpoint, custom_load=False),
                              **cfg.model_kwargs)
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name, bits))
    return model


def _evaluate_per_batch(model, loader, groups: np.ndarray):
    """Per-batch group AUCs averaged over batches, like the reference's evaluate_fairness_*."""
    model.eval()
    per_batch = []
    scores, indices = [], []
    with torch.no_grad():
        for images, labels, index in loader:
            proba = torch.softmax(model(images), dim=1)[:, 1].numpy()
            labels = labels.numpy()
            g = groups[index.numpy()]
            batch_aucs = []
            for group in np.unique(groups):
                sel = g == group
                if sel.sum() and len(np.unique(labels[sel])) == 2:
                    batch_aucs.append(roc_auc_score(labels[sel], proba[sel]))
                else:
                    batch_aucs.append(np.nan)
            per_batch.append(batch_aucs)
            scores.append(proba)
            indices.append(index.numpy())
    model.train()
    with np.errstate(all="ignore"):
        group_means = np.nanmean(np.array(per_batch, dtype=float), axis=0)
    order = np.concatenate(indices)
    whole = np.empty(len(order))
    whole[order] = np.concatenate(scores)
    return float(np.nanmin(group_means)), whole


def run(cfg: BenchConfig, work: Workload, checkpoint: str, seed: int) -> dict:
    """Run the search; return what the driver prints (times measured by the caller)."""
    y, groups = work.y, work.groups
    bit_names = BIT_NAMES(cfg.depth)
    weights = torch.as_tensor(balanced_class_weights(y[work.train]), dtype=torch.float32)
    val_groups = groups[work.val]
    epochs_trained = []
    sampled = []
    whole_set_scores = {}

    def objective(trial: optuna.Trial) -> float:
        reseed_sampler(trial.study.sampler, seed, trial.number)
        bits = "".join(str(trial.suggest_categorical(n, (0, 1))) for n in bit_names)
        lr = trial.suggest_float("lr", *cfg.lr_range, log=True)
        sampled.append([bits, lr])
        torch.manual_seed(seed)
        # Datasets, loaders and model are rebuilt in every trial.
        train_set = JpegDataset(work.paths[work.train], y[work.train], groups[work.train], cfg.image_size)
        val_set = JpegDataset(work.paths[work.val], y[work.val], val_groups, cfg.image_size)
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=cfg.batch_size, shuffle=True)
        model = _build_model(cfg, checkpoint, bits)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        criterion = torch.nn.CrossEntropyLoss(weight=weights)
        total = cfg.max_epochs * len(train_loader)
        warmup = round(cfg.warmup_fraction * total)
        step = 0
        value = float("nan")
        for epoch in range(cfg.max_epochs):
            model.train()
            for images, labels, _ in train_loader:
                for group in optimizer.param_groups:
                    group["lr"] = lr * lr_factor(step, total, warmup)
                loss = criterion(model(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
            value, whole = _evaluate_per_batch(model, val_loader, val_groups)
        epochs_trained.append(cfg.max_epochs)
        aucs = group_aucs(y[work.val], whole, val_groups)
        whole_set_scores[trial.number] = min(v for k, v in aucs.items() if k != "overall")
        # Reported once, after training: the pruner can only stop what is already done.
        trial.report(value, cfg.max_epochs - 1)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner())
    for bits in baseline_masks(cfg.depth).values():
        study.enqueue_trial({n: int(b) for n, b in zip(bit_names, bits)})
    started = time.perf_counter()
    study.optimize(objective, n_trials=cfg.n_trials)
    elapsed = time.perf_counter() - started
    best = study.best_trial
    states = [t.state for t in study.trials]
    return {
        "search_s": elapsed,
        "epochs": int(sum(epochs_trained)),
        "n_pruned": states.count(optuna.trial.TrialState.PRUNED),
        "n_complete": states.count(optuna.trial.TrialState.COMPLETE),
        "best_mask": "".join(str(best.params[n]) for n in bit_names),
        "best_lr": best.params["lr"],
        "best_val_own": best.value,
        "best_val_min_group_auc": whole_set_scores[best.number],
        "sampled": sampled,
        "own_objective": "per-batch group AUC, averaged over batches",
    }
