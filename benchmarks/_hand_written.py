"""Contestant 2: what a competent user writes by hand with Optuna + skorch.

Images are decoded and resized once, normalised once into a float tensor. Each
trial builds a skorch ``NeuralNetClassifier`` around the timm ViT loaded from the
checkpoint, freezes the masked-out parameters (``requires_grad=False``),
validates on the whole validation split after every epoch (skorch's
``predefined_split`` with an ``EpochScoring`` of the worst age-group AUC), and
reports that to Optuna's pruner after every epoch. Nothing from skfairtune:
no frozen-prefix cache, no sharing across trials, skorch's own data loaders.

With ``bf16=True`` the forward runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(a ``NeuralNetClassifier`` whose ``infer`` opens the autocast), as a user who
knows bf16 writes it; timm's attention keeps its default fused kernel.

With ``n_jobs=2`` it runs trials as a competent user parallelises such a
script: ``study.optimize(objective, n_jobs=2)`` (two Python threads sharing
one in-memory study; torch releases the GIL inside its kernels) with
``torch.set_num_threads(1)``, one torch thread per trial thread, so the two
trials together use the same two cores that ``FairTuneSearchCV(n_jobs=2)``'s
two single-threaded worker processes use. Sampling (and the model's random
head) happen under a lock so that a trial's draws depend on its number only,
as in every other contestant; training runs unlocked.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import optuna
import torch
import timm
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from _common import (
    MODEL,
    BenchConfig,
    Workload,
    balanced_class_weights,
    baseline_masks,
    load_image,
    lr_factor,
    min_group_auc,
    normalize_images,
    reseed_sampler,
    trainable,
)

BIT_NAMES = lambda depth: [f"mask__blocks.{b}.{u}" for b in range(depth) for u in ("ln", "attn", "mlp")]  # noqa: E731


def decode_once(paths, size: int) -> torch.Tensor:
    images = [load_image(path, size) for path in paths]
    return normalize_images(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)).contiguous()


class ReportToOptuna(Callback):
    """Report the validation score after every epoch; stop the trial when the pruner says so."""

    def __init__(self, trial, monitor):
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        self.trial.report(net.history[-1, self.monitor], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()


class BF16NeuralNetClassifier(NeuralNetClassifier):
    """skorch's classifier with its forward under CPU bf16 autocast (logits back in float32)."""

    def infer(self, x, **fit_params):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().infer(x, **fit_params).float()


def run(cfg: BenchConfig, work: Workload, checkpoint: str, seed: int, n_jobs: int = 1, bf16: bool = False) -> dict:
    if n_jobs > 1:
        # One intra-op thread per trial thread: n_jobs trials fill n_jobs cores.
        torch.set_num_threads(1)
    y, groups = work.y, work.groups
    started = time.perf_counter()
    X_train = decode_once(work.paths[work.train], cfg.image_size)
    X_val = decode_once(work.paths[work.val], cfg.image_size)
    y_train = torch.as_tensor(y[work.train])
    y_val, g_val = y[work.val], groups[work.val]
    valid = Dataset(X_val, torch.as_tensor(y_val))
    weights = torch.as_tensor(balanced_class_weights(y[work.train]), dtype=torch.float32)
    bit_names = BIT_NAMES(cfg.depth)
    steps_per_epoch = -(-len(X_train) // cfg.batch_size)
    total = cfg.max_epochs * steps_per_epoch
    warmup = round(cfg.warmup_fraction * total)
    epochs_trained = []
    sampled = {}
    sampling = threading.Lock()

    def worst_group_auc(net, X, y_true):
        return min_group_auc(y_val, net.predict_proba(X)[:, 1], g_val)

    def objective(trial: optuna.Trial) -> float:
        with sampling:  # the sampler's state and torch's global seed are shared by the threads
            reseed_sampler(trial.study.sampler, seed, trial.number)
            bits = "".join(str(trial.suggest_categorical(n, (0, 1))) for n in bit_names)
            lr = trial.suggest_float("lr", *cfg.lr_range, log=True)
            sampled[trial.number] = [bits, lr]
            torch.manual_seed(seed)
            model = timm.create_model(MODEL, pretrained=True, num_classes=2,
                                      pretrained_cfg_overlay=dict(file=checkpoint, custom_load=False),
                                      **cfg.model_kwargs)
        for name, param in model.named_parameters():
            param.requires_grad_(trainable(name, bits))
        net = (BF16NeuralNetClassifier if bf16 else NeuralNetClassifier)(
            model,
            criterion=torch.nn.CrossEntropyLoss,
            criterion__weight=weights,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=cfg.weight_decay,
            lr=lr,
            max_epochs=cfg.max_epochs,
            batch_size=cfg.batch_size,
            iterator_train__shuffle=True,
            train_split=predefined_split(valid),
            callbacks=[
                LRScheduler(policy=torch.optim.lr_scheduler.LambdaLR,
                            lr_lambda=lambda step: lr_factor(step, total, warmup), step_every="batch"),
                EpochScoring(worst_group_auc, lower_is_better=False, name="val_min_group_auc"),
                ReportToOptuna(trial, "val_min_group_auc"),
            ],
            device="cpu",
            verbose=0,
        )
        try:
            net.fit(X_train, y_train)
        finally:
            epochs_trained.append(len(net.history))
        return float(net.history[-1, "val_min_group_auc"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(reduction_factor=4))
    for bits in baseline_masks(cfg.depth).values():
        study.enqueue_trial({n: int(b) for n, b in zip(bit_names, bits)})
    study.optimize(objective, n_trials=cfg.n_trials, n_jobs=n_jobs)
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
        "best_val_min_group_auc": best.value,
        "sampled": [sampled[number] for number in sorted(sampled)],
        "own_objective": "whole-set min-group AUC",
    }
