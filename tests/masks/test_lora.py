"""Tests for skfairtune.masks._lora: ternary unit states (frozen / full / LoRA) on a tiny timm ViT."""

import sys

import numpy as np
import optuna
import pytest
import timm
import torch
from torch import nn

from skfairtune.backbone import ViTSuffix, forward_prefix, supports_prefix_cache
from skfairtune.masks import MaskSpace, apply_mask, frozen_prefix_length
from skfairtune.masks._lora import (
    UnitStates,
    apply_units,
    count_trainable,
    merge_lora,
    resolve_states,
)
from skfairtune.search._space import states_from_params, suggest_states

WIDTH = 16  # embed_dim; the MLP hidden width is 4 * WIDTH (timm's mlp_ratio=4)


def tiny_vit(depth=2, seed=0):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4,
                             embed_dim=WIDTH, depth=depth, num_heads=2, num_classes=2)


def images(n=16, seed=0):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def lora_names(module, adapted):
    return {f"{module}.{a}.{ab}.default.weight" for a in adapted for ab in ("lora_A", "lora_B")}


def test_trainable_names_follow_the_states():
    pytest.importorskip("peft")
    vit = tiny_vit()
    # block 0: ln frozen, attn full, mlp LoRA; block 1: ln full, attn LoRA, mlp frozen
    info = apply_units(vit, "012120", rank=4)
    expected = (
        {f"blocks.0.attn.{m}.{p}" for m in ("qkv", "proj") for p in ("weight", "bias")}
        | lora_names("blocks.0.mlp", ("fc1", "fc2"))
        | {f"blocks.1.{m}.{p}" for m in ("norm1", "norm2") for p in ("weight", "bias")}
        | lora_names("blocks.1.attn", ("qkv", "proj"))
        | {"head.weight", "head.bias"}
    )
    assert set(info["trainable_names"]) == expected
    assert {n for n, p in vit.named_parameters() if p.requires_grad} == expected
    assert info["lora_modules"] == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2",
                                    "blocks.1.attn.qkv", "blocks.1.attn.proj"]
    # the adapted layers' own weights and biases stay frozen
    assert not vit.get_parameter("blocks.0.mlp.fc1.base_layer.bias").requires_grad


def test_optimizer_steps_change_exactly_the_trainable_parameters():
    pytest.importorskip("peft")
    vit = tiny_vit()
    info = apply_units(vit, "012120", rank=2)
    before = {n: p.detach().clone() for n, p in vit.named_parameters()}
    optimizer = torch.optim.SGD([p for p in vit.parameters() if p.requires_grad], lr=0.1)
    x, y = images(), torch.arange(16) % 2
    for _ in range(3):  # lora_B starts at zero, so lora_A only moves from the second step
        optimizer.zero_grad()
        nn.functional.cross_entropy(vit(x), y).backward()
        optimizer.step()
    frozen_with_grad = [n for n, p in vit.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen_with_grad == []
    changed = {n for n, p in vit.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(info["trainable_names"])


@pytest.mark.parametrize("space_name, states, per_unit", [
    # r * (in + out) summed over a unit's linears: attn qkv (d, 3d) + proj (d, d) = 6 r d;
    # MLP fc1 (d, 4d) + fc2 (4d, d) = 10 r d; a whole block = 16 r d.
    ("ln-attn-mlp", "020000", 6),
    ("ln-attn-mlp", "002002", 20),
    ("ln-attn-mlp", "022022", 32),
    ("attn", "22", 12),
    ("block", "21", 16),
    ("norm1-attn-norm2-mlp", "02000002", 16),
])
@pytest.mark.parametrize("rank", [1, 4, 8])
def test_lora_parameter_count_is_the_formula(space_name, states, per_unit, rank):
    pytest.importorskip("peft")
    vit = tiny_vit()
    space = MaskSpace.from_model(space_name, vit)
    info = apply_units(vit, resolve_states(states, space), rank=rank)
    assert info["n_lora"] == per_unit * rank * WIDTH
    # everything else that trains is what apply_mask trains for the full units
    reference = apply_mask(tiny_vit(), resolve_states(states, space).full_mask)
    assert info["n_trainable"] - info["n_lora"] == reference["n_trainable"]
    assert info["n_total"] == reference["n_total"] + info["n_lora"]
    assert count_trainable(vit) == {"n_trainable": info["n_trainable"], "n_lora": info["n_lora"],
                                    "n_full": reference["n_trainable"], "n_total": info["n_total"]}


def test_merge_gives_a_plain_timm_model_with_the_same_predictions():
    pytest.importorskip("peft")
    from peft.tuners.lora import LoraLayer

    vit = tiny_vit()
    apply_units(vit, "022022", rank=4, alpha=8)
    optimizer = torch.optim.Adam([p for p in vit.parameters() if p.requires_grad], lr=1e-2)
    x, y = images(), torch.arange(16) % 2
    for _ in range(5):  # move lora_B away from zero so the merge has something to fold in
        optimizer.zero_grad()
        nn.functional.cross_entropy(vit(x), y).backward()
        optimizer.step()
    vit.eval()
    with torch.no_grad():
        adapted = vit(x)
        plain = vit.blocks[0].attn.qkv.base_layer(vit.blocks[0].norm1(vit.patch_embed(x)))
    merged = merge_lora(vit)
    assert merged is vit
    assert not any(isinstance(m, LoraLayer) for m in merged.modules())
    assert type(merged.blocks[1].mlp.fc2) is nn.Linear
    fresh = tiny_vit()
    assert list(merged.state_dict()) == list(fresh.state_dict())
    fresh.load_state_dict(merged.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x), adapted, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fresh(x), adapted, atol=1e-5, rtol=1e-5)
        # the merged weight differs from the base weight: the adapters were not zero
        assert not torch.allclose(merged.blocks[0].attn.qkv(merged.blocks[0].norm1(merged.patch_embed(x))), plain)
    assert merge_lora(merged) is merged  # nothing left to merge


def _train(states, steps=20, **kwargs):
    vit = tiny_vit()
    apply_units(vit, states, **kwargs)
    x = images(32, seed=1)
    y = torch.arange(32) % 2
    x[y == 1, :, :4, :4] += 3.0  # a visible label
    optimizer = torch.optim.Adam([p for p in vit.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(vit(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_a_few_lora_steps_reduce_the_loss_beyond_the_head_alone():
    pytest.importorskip("peft")
    lora = _train("022022", rank=4)
    head_only = _train("000000")
    assert lora[-1] < 0.6 * lora[0]
    assert lora[-1] < 0.6 * head_only[-1]  # the adapters learn, not only the head


def test_frozen_prefix_stops_before_the_first_lora_unit():
    pytest.importorskip("peft")
    vit = tiny_vit()
    states = resolve_states("000020", MaskSpace.from_model("ln-attn-mlp", vit))
    # a LoRA unit is trainable: the prefix is block 0 only (two half-blocks)
    assert frozen_prefix_length(states.trainable_mask) == 2
    apply_units(vit, states, rank=2)
    assert supports_prefix_cache(vit)
    vit.eval()
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(ViTSuffix(vit, 2)(forward_prefix(vit, x, 2)), vit(x))


def test_states_without_lora_need_no_peft_and_match_apply_mask(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    vit = tiny_vit()
    info = apply_units(vit, "010011")
    reference = apply_mask(tiny_vit(), MaskSpace("ln-attn-mlp", 2).resolve("010011"))
    assert info["trainable_names"] == reference["trainable_names"]
    assert info["n_lora"] == 0 and info["lora_modules"] == []
    with pytest.raises(ImportError, match=r"pip install skfairtune\[lora\]"):
        apply_units(tiny_vit(), "020000", rank=2)


def test_layernorm_state_two_means_full():
    space = MaskSpace("norm1-attn-norm2-mlp", depth=1)
    assert resolve_states("2222", space).to_string() == "1212"
    assert resolve_states({"blocks.0.norm2": 2}, space).full_units == ("blocks.0.norm2",)


def test_string_sequence_mapping_and_mask_forms_agree():
    space = MaskSpace("ln-attn-mlp", depth=2)
    expected = resolve_states("012020", space)
    assert resolve_states([0, 1, 2, 0, 2, 0], space) == expected
    assert resolve_states(np.array([0, 1, 2, 0, 2, 0]), space) == expected
    assert resolve_states({"blocks.0.attn": 1, "blocks.0.mlp": 2, "blocks.1.attn": 2}, space) == expected
    assert resolve_states(expected, space) is not None and resolve_states(expected, space) == expected
    # a binary mask is the ternary string without 2s
    assert resolve_states(space.resolve({"attn": "all"}), space).to_string() == "010010"
    assert expected.to_dict()["blocks.0.mlp"] == 2


def test_suggest_states_round_trips_through_trial_params():
    space = MaskSpace("ln-attn-mlp", depth=2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        states, rank = suggest_states(trial, space, ranks=(2, 8))
        assert all(states.to_dict()[u] != 2 for u in space.units if u.endswith(".ln"))
        assert (rank is None) == (not states.lora_units)
        assert ("lora_rank" in trial.params) == bool(states.lora_units)
        assert states_from_params(trial.params, space) == (states, rank)
        study.tell(trial, 0.0)
        seen.update(states.states)
    assert seen == {0, 1, 2}


class _ConvBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(4), nn.LayerNorm(4)
        self.attn, self.mlp = nn.Conv1d(4, 4, 1), nn.Conv1d(4, 4, 1)


class _ConvModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_ConvBlock()])
        self.head = nn.Linear(4, 2)


def _already_adapted():
    vit = tiny_vit()
    apply_units(vit, "020000", rank=2)
    return vit


BAD = [
    (lambda: (tiny_vit(), "020000", dict(rank=0)), ValueError, r"`rank` must be a positive integer.*got 0"),
    (lambda: (tiny_vit(), "020000", dict(rank=2.5)), ValueError, r"`rank` must be a positive integer.*2\.5"),
    (lambda: (tiny_vit(), "020000", dict(rank=True)), ValueError, r"`rank` must be a positive integer.*True"),
    (lambda: (tiny_vit(), "020000", dict()), ValueError, r"`rank` must be a positive integer.*None"),
    (lambda: (tiny_vit(), "020000", dict(rank=2, alpha=-1)), ValueError, r"`alpha` must be a positive number"),
    (lambda: (tiny_vit(), "0200", dict(rank=2)), ValueError, r"`states` has 4 digits but .* needs 6"),
    (lambda: (tiny_vit(), "030000", dict(rank=2)), ValueError, r"`states` must be a string of 6 digits 0/1/2"),
    (lambda: (tiny_vit(), [0, 3, 0, 0, 0, 0], dict(rank=2)), ValueError, r"only 0, 1 or 2.*\(1, 3\)"),
    (lambda: (tiny_vit(), {"blocks.5.attn": 2}, dict(rank=2)), ValueError, r"unknown unit 'blocks.5.attn'"),
    (lambda: (tiny_vit(), {"blocks.0.attn": 7}, dict(rank=2)), ValueError, r"`states`\['blocks.0.attn'\] must be 0, 1 or 2"),
    (lambda: (tiny_vit(), None, dict(rank=2)), TypeError, r"`states` must be a string"),
    (lambda: (tiny_vit(), MaskSpace("ln-attn-mlp", 2).resolve("bitfit"), dict(rank=2)), ValueError,
     r"extra patterns \['\*bias\*'\].*apply_mask"),
    (lambda: (tiny_vit(depth=3), resolve_states("020000", MaskSpace("ln-attn-mlp", 2)), dict(rank=2)),
     ValueError, r"made for depth 2 .* the model has 3 blocks"),
    (lambda: (_already_adapted(), "000020", dict(rank=2)), ValueError, r"already holds LoRA adapters.*merge_lora"),
    (lambda: (_ConvModel(), "020000"[:3], dict(rank=2)), ValueError,
     r"unit 'blocks.0.attn' has no nn.Linear to adapt.*Set the unit to 0 \(frozen\) or 1 \(full\)"),
]


@pytest.mark.parametrize("make, error, message", BAD)
def test_bad_inputs(make, error, message):
    pytest.importorskip("peft")
    model, states, kwargs = make()
    with pytest.raises(error, match=message):
        apply_units(model, states, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(ranks=()), r"`ranks` must be a non-empty sequence"),
    (dict(ranks=8), r"`ranks` must be a non-empty sequence"),
    (dict(ranks=(4, 0)), r"`rank` must be a positive integer.*got 0"),
])
def test_bad_suggest_arguments(kwargs, message):
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=message):
        suggest_states(trial, MaskSpace("attn", 2), **kwargs)


def test_params_with_lora_but_no_rank():
    space = MaskSpace("attn", depth=2)
    with pytest.raises(ValueError, match=r"state 2 \(LoRA\) but no rank 'lora_rank'"):
        states_from_params({"mask__blocks.0.attn": 2, "mask__blocks.1.attn": 0}, space)
    with pytest.raises(ValueError, match=r"lacks 1 of the 2 unit states"):
        states_from_params({"mask__blocks.0.attn": 2}, space)


def test_unit_states_validates_its_fields():
    with pytest.raises(ValueError, match=r"3 entries of 0/1/2"):
        UnitStates(MaskSpace("attn", 3), (0, 1))
    with pytest.raises(TypeError, match=r"`space` must be a MaskSpace"):
        UnitStates("attn", (0,))


def _fake_search(masks, scores, ranks):
    from types import SimpleNamespace

    results = {"state": ["complete"] * len(masks), "mean_test_score": np.array(scores, dtype=float),
               "param_mask": np.array(masks, dtype=object), "param_lora_rank": np.array(ranks, dtype=float)}
    return SimpleNamespace(cv_results_=results, space="ln-attn-mlp", scoring="min_group_auc",
                           mask_space_=MaskSpace("ln-attn-mlp", depth=2))


def test_mask_figure_marks_lora_units_apart():
    import matplotlib

    matplotlib.use("Agg")
    from skfairtune.plotting import plot_mask_selection

    search = _fake_search(["012120", "000000", "010010"], [0.9, 0.5, 0.8], [8, np.nan, np.nan])
    ax = plot_mask_selection(search)
    # rows: ln, attn, mlp; columns: blocks. Full 1, LoRA 0.5, frozen 0.
    np.testing.assert_array_equal(ax.images[0].get_array(), [[0, 1], [1, 0.5], [0.5, 0]])
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["LoRA r=8", "LoRA r=8", "on", "on"]
    ax = plot_mask_selection(search, top_k=2)  # "012120" and "010010": trained shares, LoRA apart
    np.testing.assert_array_equal(ax.images[0].get_array(), [[0, 0.5], [1, 1], [0.5, 0]])
    assert sorted(t.get_text() for t in ax.texts if "LoRA" in t.get_text()) == ["100%\n50% LoRA", "50%\n50% LoRA"]
    matplotlib.pyplot.close("all")


def test_adapted_model_pickles():
    pytest.importorskip("peft")
    import pickle

    vit = tiny_vit()
    apply_units(vit, "022022", rank=2)
    copy = pickle.loads(pickle.dumps(vit))
    vit.eval(), copy.eval()
    with torch.no_grad():
        torch.testing.assert_close(copy(images()), vit(images()))
    assert count_trainable(copy) == count_trainable(vit)


# ----------------------------------------------------------------------------- through the estimators
def test_classifier_trains_lora_units_and_merges_them():
    pytest.importorskip("peft")
    from skfairtune.datasets import make_biased_images

    from ..conftest import tiny_classifier

    data = make_biased_images(96, image_size=16, random_state=0)
    clf = tiny_classifier(mask="000002", lora_rank=2, max_epochs=1).fit(data.images, data.target)
    binary = tiny_classifier(mask="000001", max_epochs=1).fit(data.images, data.target)
    assert clf.n_lora_params_ > 0 and clf.unit_states_.lora_units == ("blocks.1.mlp",)
    # Rank-2 adapters train far fewer parameters than the unit they adapt.
    assert clf.n_trainable_params_ < binary.n_trainable_params_
    assert clf.n_params_ == binary.n_params_
    assert clf.frozen_prefix_ == 3  # the prefix stops before the adapted unit
    # Merged at the end of fit: a plain timm model, no adapter left.
    assert not any("lora_" in name for name, _ in clf.model_.named_parameters())
    assert clf.predict_proba(data.images[:5]).shape == (5, 2)


def test_search_over_ternary_units_records_the_rank():
    pytest.importorskip("peft")
    from skfairtune import FairTuneSearchCV
    from skfairtune.datasets import make_biased_images

    from ..conftest import tiny_classifier

    data = make_biased_images(96, image_size=16, random_state=0)
    search = FairTuneSearchCV(tiny_classifier(max_epochs=1), n_trials=6, lora_ranks=(2, 4), baselines=None,
                              n_bootstrap=0, random_state=0)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    masks = [p["mask"] for p in search.cv_results_["params"]]
    ranked = [p for p in search.cv_results_["params"] if "2" in p["mask"]]
    assert ranked, f"no trial drew a LoRA unit: {masks}"
    assert all(p["lora_rank"] in (2, 4) for p in ranked)
    assert all("lora_rank" not in p for p in search.cv_results_["params"] if "2" not in p["mask"])


@pytest.mark.parametrize("value", [0, (), (2, 0), "8", (1.5,)])
def test_bad_lora_ranks_are_refused(value):
    from skfairtune import FairTuneSearchCV

    from ..conftest import tiny_classifier

    with pytest.raises(ValueError, match=r"`lora_ranks` must be None or a non-empty sequence of positive ints"):
        FairTuneSearchCV(tiny_classifier(), lora_ranks=value).fit(np.zeros((8, 16, 16, 3), np.uint8), [0, 1] * 4)


@pytest.mark.parametrize("search_params, kept", [
    (dict(lora_ranks=(4, 8), scoring=["min_group_auc", "n_trainable_params"]), None),  # docs/howto/lora_units.md
    (dict(mask_space=None), "021021"),  # the classifier's own ternary mask, trained as given
])
def test_search_accepts_a_classifier_with_a_ternary_mask(search_params, kept):
    # Issue 27: the search checked the template's mask as a binary one and refused "021021".
    pytest.importorskip("peft")
    from skfairtune import FairTuneSearchCV
    from skfairtune.datasets import make_biased_images

    from ..conftest import TINY_VIT, tiny_classifier

    data = make_biased_images(64, image_size=16, random_state=0)
    clf = tiny_classifier(max_epochs=1, mask="021" * 2, lora_rank=4, model_kwargs=dict(TINY_VIT, embed_dim=16))
    search = FairTuneSearchCV(clf, n_trials=2, baselines=() if kept else ("linear",), baseline_lrs=None,
                              pruner="none", random_state=0, **search_params)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert len(search.cv_results_["params"]) == 2
    if kept:
        assert search.best_estimator_.unit_states_.to_string() == kept


def test_search_still_refuses_a_bad_template_mask():
    from skfairtune import FairTuneSearchCV
    from skfairtune.datasets import make_biased_images

    from ..conftest import tiny_classifier

    data = make_biased_images(32, image_size=16, random_state=0)
    with pytest.raises(ValueError, match="neither a preset nor a bit string"):
        FairTuneSearchCV(tiny_classifier(mask="01x01x"), n_trials=1).fit(
            data.images, data.target, sensitive_features=data.sensitive_features)
