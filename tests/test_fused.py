"""Fused multi-trial training: each member must match the same trial trained alone."""

import copy
import math

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")

from skfairtune._fused import FusedTrainer, choose_group_size, trainable_names  # noqa: E402
from skfairtune._training import WarmupCosineLR  # noqa: E402
from skfairtune.masks import MaskSpace  # noqa: E402

N, BATCH, EPOCHS, WD, WARMUP = 36, 8, 3, 0.05, 1 / 3


@pytest.fixture(scope="module")
def template():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4,
                             embed_dim=16, depth=3, num_heads=2, num_classes=2)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(N, 3, 16, 16, generator=g)
    y = (X[:, 0].mean((1, 2)) > 0).long()
    return X, y


def lone_trial(template, names, lr, seed, X, y, epochs, class_weights=None):
    """A plain single-model loop: torch AdamW, the library's LR schedule and EpochSeed order."""
    model = copy.deepcopy(template).train()
    names = set(names) | {"head.weight", "head.bias"}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=WD)
    total = math.ceil(len(X) / BATCH) * EPOCHS
    schedule = WarmupCosineLR(total, round(WARMUP * total))
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    criterion = torch.nn.CrossEntropyLoss(weight=weight)
    step = 0
    for epoch in range(epochs):
        torch.manual_seed(seed * 100_003 + epoch + 1)
        order = torch.randperm(len(X))
        for first in range(0, len(X), BATCH):
            index = order[first:first + BATCH]
            for group in opt.param_groups:
                group["lr"] = lr * schedule.factor(step)
            loss = criterion(model(X[index]), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return model.eval()


def assert_member_matches(trainer, member, model, X):
    state = trainer.state_dict(member)
    for n, p in model.named_parameters():
        got, want = state[n], p.detach()
        if n.endswith("attn.qkv.bias"):
            # The key bias adds a per-query constant that softmax removes: its true gradient is
            # zero, so both runs' "gradients" are rounding noise that Adam scales up to lr-sized
            # steps. It cannot change any output; compare the query and value biases only.
            d = len(got) // 3
            got, want = torch.cat([got[:d], got[2 * d:]]), torch.cat([want[:d], want[2 * d:]])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5, msg=lambda m: f"{n}: {m}")
    with torch.no_grad():
        expected = torch.softmax(model(X), -1).numpy()
    np.testing.assert_allclose(trainer.predict_proba(X)[member], expected, rtol=1e-4, atol=1e-5)


def space_mask(template, bits):
    return trainable_names(template, MaskSpace.from_model("ln-attn-mlp", template).resolve(bits))


MEMBERS = [  # (mask description, lr, seed)
    ("full-embeddings", 1e-3, 0),
    ("111111111", 3e-3, 0),     # same seed: shares the batch with the first
    ("010001100", 1e-2, 4),
    ("000000", 5e-3, 2),        # blocks 0-1 frozen -> prefix shared
    ("linear", 2e-2, 3),
]


def resolve(template, desc):
    if desc == "full-embeddings":
        return frozenset(n for n, _ in template.named_parameters())
    if desc == "linear":
        return frozenset()
    if desc == "000000":
        return space_mask(template, "000000011")
    return space_mask(template, desc)


@pytest.mark.parametrize("class_weights", [None, [0.7, 1.9]])
def test_members_match_lone_trials(template, data, class_weights):
    X, y = data
    before = {n: p.detach().clone() for n, p in template.named_parameters()}
    trainer = FusedTrainer(template, X, y, max_epochs=EPOCHS, batch_size=BATCH, weight_decay=WD,
                           warmup_fraction=WARMUP, class_weights=class_weights)
    ids = [trainer.add(resolve(template, d), lr, seed=s) for d, lr, s in MEMBERS]
    trainer.step(EPOCHS)
    for ident, (desc, lr, seed) in zip(ids, MEMBERS):
        lone = lone_trial(template, resolve(template, desc), lr, seed, X, y, EPOCHS, class_weights)
        assert_member_matches(trainer, ident, lone, X)
        assert len(trainer.train_loss[ident]) == EPOCHS and trainer.epochs_done(ident) == EPOCHS
    for n, p in template.named_parameters():  # the template is read, never trained
        assert torch.equal(p, before[n])


def test_prefix_is_shared_and_frozen_parameters_stay_exact(template, data):
    X, y = data
    trainer = FusedTrainer(template, X, y, max_epochs=EPOCHS, batch_size=BATCH)
    a = trainer.add(space_mask(template, "000001000"), 1e-2, seed=0)
    b = trainer.add(space_mask(template, "000000001"), 1e-2, seed=1)
    trainer.step(1)
    assert trainer._cache[0] == 3  # half-blocks 0-2 frozen in both: run once, cached
    state = trainer.state_dict(b)
    base = dict(template.named_parameters())
    for n in ("blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias", "blocks.2.attn.qkv.weight"):
        assert torch.equal(state[n], base[n])  # a (or no one) trains it, b does not: b's copy never moves
    for n in ("blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias"):
        assert not torch.equal(trainer.state_dict(a)[n], base[n])


def test_pruned_member_leaves_and_new_member_joins(template, data):
    X, y = data
    trainer = FusedTrainer(template, X, y, max_epochs=EPOCHS, batch_size=BATCH)
    keep = trainer.add(space_mask(template, "010010010"), 2e-3, seed=5)
    pruned = trainer.add(space_mask(template, "111000000"), 2e-3, seed=6)
    trainer.step(1)
    trainer.remove(pruned)
    late = trainer.add(space_mask(template, "001001001"), 4e-3, seed=7)
    assert trainer.members == (keep, late)
    trainer.step(2)
    with pytest.raises(RuntimeError, match="max_epochs"):
        trainer.step(1)
    trainer.remove(keep)
    assert_member_matches(trainer, late, lone_trial(template, space_mask(template, "001001001"), 4e-3, 7,
                                                    X, y, 2), X)
    with pytest.raises(KeyError, match="not in the group"):
        trainer.n_trainable_params(keep)


def test_late_member_and_counts(template, data):
    X, y = data
    trainer = FusedTrainer(template, X, y, max_epochs=EPOCHS, batch_size=BATCH)
    first = trainer.add(space_mask(template, "100100100"), 3e-3, seed=1)
    trainer.step(1)
    second = trainer.add(space_mask(template, "111111111"), 3e-3, seed=2)
    trainer.step(2)
    assert trainer.epochs_done(first) == 3 and trainer.epochs_done(second) == 2
    assert_member_matches(trainer, first, lone_trial(template, space_mask(template, "100100100"), 3e-3, 1,
                                                     X, y, 3), X)
    head = sum(p.numel() for n, p in template.named_parameters() if n.startswith("head."))
    blocks = sum(p.numel() for n, p in template.named_parameters() if n.startswith("blocks."))
    assert trainer.n_trainable_params(second) == head + blocks


def test_choose_group_size_reports_every_candidate(template, data):
    X, y = data
    masks = [space_mask(template, b) for b in ("010010010", "101101101", "111111111")]
    k, timings = choose_group_size(template, X, y, masks, [1e-3] * 3, candidates=(1, 2, 4), n_batches=1,
                                   batch_size=BATCH, stop_above=float("inf"))
    assert set(timings) == {1, 2, 4} and all(t > 0 for t in timings.values())
    assert k in timings
    assert k == 1 or timings[1] / timings[k] >= 1.1
    k_never, _ = choose_group_size(template, X, y, masks, [1e-3] * 3, candidates=(1, 2), n_batches=1,
                                   batch_size=BATCH, min_gain=1e9)
    assert k_never == 1
    _, stopped = choose_group_size(template, X, y, masks, [1e-3] * 3, candidates=(1, 2, 4), n_batches=1,
                                   batch_size=BATCH, stop_above=0.0)
    assert set(stopped) == {1, 2}  # K=2 costs more than 0x the best: K=4 is never timed


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(X="images"), ValueError, "`X` must be a float tensor"),
    (dict(y=np.zeros(3)), ValueError, "`y` must hold one label per image"),
    (dict(y=np.full(N, 5)), ValueError, r"labels in \[0, 2\)"),
    (dict(max_epochs=0), ValueError, "`max_epochs` must be an integer >= 1"),
    (dict(batch_size=2.5), ValueError, "`batch_size` must be an integer >= 1"),
])
def test_bad_trainer_inputs(template, data, kwargs, error, message):
    X, y = data
    params = dict(X=X, y=y, max_epochs=1)
    params.update(kwargs)
    with pytest.raises(error, match=message):
        FusedTrainer(template, **params)


@pytest.mark.parametrize("mask, lr, error, message", [
    (["blocks.0.nope"], 1e-3, ValueError, "does not have"),
    ("blocks.0.attn.qkv.weight", 1e-3, TypeError, "iterable of parameter names"),
    ([], 0.0, ValueError, "`lr` must be a positive finite number"),
    ([], float("nan"), ValueError, "`lr` must be a positive finite number"),
])
def test_bad_member_inputs(template, data, mask, lr, error, message):
    trainer = FusedTrainer(template, *data, max_epochs=1)
    with pytest.raises(error, match=message):
        trainer.add(mask, lr)


def test_unsupported_template_is_refused(data):
    torch.manual_seed(0)
    pooled = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4,
                               embed_dim=16, depth=1, num_heads=2, num_classes=2, global_pool="avg")
    with pytest.raises(ValueError, match="cannot be trained fused.*'avg'"):
        FusedTrainer(pooled, *data, max_epochs=1)
    dropped = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4,
                                embed_dim=16, depth=2, num_heads=2, num_classes=2, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="dropout or stochastic depth"):
        FusedTrainer(dropped, *data, max_epochs=1)


def test_bench_fused_smoke_prints_ratio_and_agrees_with_plain_loop(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fused.py"
    spec = importlib.util.spec_from_file_location("bench_fused", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke"])
    out = capsys.readouterr().out
    for line in ("plain: ", "engine_k1: ", "fused: ", "probe (s per trial-batch)",
                 "RATIO fused / best one-at-a-time:", "by wall time"):
        assert line in out
    assert result["k"] in result["timings"] and set(result["timings"]) == {1, 2}
    baseline = max(result["per_hour"]["plain"], result["per_hour"]["engine_k1"])
    assert result["ratio"] == pytest.approx(result["per_hour"]["fused"] / baseline)
    assert result["max_diff"] < 1e-4  # fused trials end where the plain loop's do
