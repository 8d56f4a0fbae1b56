"""Tests for skfairtune.masks: mask spaces, resolution, presets, apply_mask, frozen prefixes."""

from fnmatch import fnmatchcase
import pickle
import re

import numpy as np
import pytest
import timm
import torch
from torch import nn

from skfairtune.masks import (
    MASK_SPACES,
    PRESET_DESCRIPTIONS,
    PRESETS,
    Mask,
    MaskSpace,
    apply_mask,
    frozen_prefix_length,
    resolve_mask,
)


BITS_PER_BLOCK = {"ln-attn-mlp": 3, "attn": 1, "ln": 1, "block": 1, "norm1-attn-norm2-mlp": 4}

# Which unit kind owns each sub-module of a timm block, per space (written from
# the paper's definition of the spaces, independently of the implementation).
MODULE_KIND = {
    "ln-attn-mlp": {"norm1": "ln", "norm2": "ln", "attn": "attn", "ls1": "attn", "mlp": "mlp", "ls2": "mlp"},
    "norm1-attn-norm2-mlp": {
        "norm1": "norm1", "attn": "attn", "ls1": "attn", "norm2": "norm2", "mlp": "mlp", "ls2": "mlp",
    },
    "attn": {"attn": "attn", "ls1": "attn"},
    "ln": {"norm1": "ln", "norm2": "ln"},
    "block": {m: "block" for m in ("norm1", "attn", "ls1", "norm2", "mlp", "ls2")},
}
FIRST_HALF = {"norm1", "attn", "ls1"}


def tiny_vit(depth=3, layer_scale=True, **kw):
    kw = dict(img_size=16, patch_size=4, embed_dim=16, depth=depth, num_heads=2, num_classes=2, **kw)
    if layer_scale:
        kw["init_values"] = 0.1  # adds ls1/ls2 parameters
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw)


def expected_trainable(model, mask, *, embeddings=False, final_norm=False):
    """Trainable parameter names derived from the block/sub-module of each name."""
    kinds_on = {}
    for unit, bit in mask.to_dict().items():
        _, block, kind = unit.split(".")
        kinds_on.setdefault(int(block), set())
        if bit:
            kinds_on[int(block)].add(kind)
    out = set()
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "blocks":
            kind = MODULE_KIND[mask.space.name].get(parts[2])
            if kind in kinds_on[int(parts[1])]:
                out.add(name)
        if any(fnmatchcase(name, p) for p in mask.extra_patterns):
            out.add(name)
        elif parts[0] == "head":
            out.add(name)
        elif embeddings and parts[0] in ("patch_embed", "pos_embed", "cls_token", "reg_token"):
            out.add(name)
        elif final_norm and parts[0] in ("norm", "fc_norm"):
            out.add(name)
    return out


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- spaces


@pytest.mark.parametrize("name", MASK_SPACES)
@pytest.mark.parametrize("depth", [1, 4, 12])
def test_space_size_and_unit_names(name, depth):
    space = MaskSpace(name, depth)
    assert space.n_bits == BITS_PER_BLOCK[name] * depth
    assert len(space.units) == space.n_bits == len(set(space.units))
    assert len(space.unit_kinds) == BITS_PER_BLOCK[name]
    # block-major order: the first k units belong to block 0, the last k to the last block
    k = BITS_PER_BLOCK[name]
    assert all(u.startswith("blocks.0.") for u in space.units[:k])
    assert all(u.startswith(f"blocks.{depth - 1}.") for u in space.units[-k:])
    assert len(space.bit_names) == space.n_bits and len(set(space.bit_names)) == space.n_bits


def test_main_space_is_36_bits_in_paper_order():
    space = MaskSpace("ln-attn-mlp", 12)
    assert space.n_bits == 36
    assert space.units[:4] == ["blocks.0.ln", "blocks.0.attn", "blocks.0.mlp", "blocks.1.ln"]
    assert MaskSpace("norm1-attn-norm2-mlp", 2).units[:4] == [
        "blocks.0.norm1", "blocks.0.attn", "blocks.0.norm2", "blocks.0.mlp",
    ]


@pytest.mark.parametrize(
    "name, depth, exc, msg",
    [
        ("attention", 12, ValueError, r"`name` must be one of .*'ln-attn-mlp'.*Did you mean 'attn'"),
        ("lnattnmlp", 12, ValueError, r"`name` must be one of"),
        (3, 12, ValueError, r"`name` must be one of"),
        ("attn", 0, ValueError, r"`depth` must be a positive integer.*got 0"),
        ("attn", 2.5, ValueError, r"`depth` must be a positive integer"),
        ("attn", True, ValueError, r"`depth` must be a positive integer"),
    ],
)
def test_space_rejects_bad_arguments(name, depth, exc, msg):
    with pytest.raises(exc, match=msg):
        MaskSpace(name, depth)


def test_space_equality_hash_repr_pickle():
    a, b = MaskSpace("attn", 4), MaskSpace("attn", 4)
    assert a == b and hash(a) == hash(b)
    assert a != MaskSpace("attn", 5) and a != MaskSpace("ln", 4)
    assert repr(a) == "MaskSpace('attn', depth=4)"
    assert pickle.loads(pickle.dumps(a)) == a
    mask = a.resolve("0101")
    assert pickle.loads(pickle.dumps(mask)) == mask


def test_from_model_reads_depth():
    assert MaskSpace.from_model("ln-attn-mlp", tiny_vit(depth=3)).depth == 3
    with pytest.raises(ValueError, match=r"`model` \(Linear\) has no recognisable transformer blocks.*from_patterns"):
        MaskSpace.from_model("attn", nn.Linear(2, 2))


@pytest.mark.parametrize("name", MASK_SPACES)
def test_units_partition_block_parameters(name):
    """Fine-grained spaces give every block parameter to exactly one unit."""
    model = tiny_vit(depth=2, layer_scale=True)
    space = MaskSpace.from_model(name, model)

    for pname, _ in model.named_parameters():
        owners = [u for u in space.units if any(fnmatchcase(pname, p) for p in space.param_patterns(u))]
        if not pname.startswith("blocks."):
            assert owners == []
            continue
        module = pname.split(".")[2]
        if module in MODULE_KIND[name]:
            assert owners == [f"blocks.{pname.split('.')[1]}.{MODULE_KIND[name][module]}"], pname
        else:
            assert owners == [], pname  # e.g. the MLP in the "attn" space


def test_layer_scale_goes_with_its_branch():
    space = MaskSpace("ln-attn-mlp", 2)
    assert "blocks.1.ls1.*" in space.param_patterns("blocks.1.attn")
    assert "blocks.1.ls2.*" in space.param_patterns("blocks.1.mlp")
    with pytest.raises(ValueError, match=r"`unit` must be a unit of MaskSpace\('ln-attn-mlp', depth=2\)"):
        space.param_patterns("blocks.2.attn")


# --------------------------------------------------------------------------- resolution


def test_all_forms_resolve_to_the_same_mask():
    space = MaskSpace("ln-attn-mlp", 4)
    expected = (0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1)
    forms = [
        "010010010111",
        list(expected),
        tuple(bool(b) for b in expected),
        np.array(expected, dtype=np.int64),
        np.array(expected, dtype=bool),
        np.array(expected, dtype=float),
        np.array(expected).reshape(4, 3),
        torch.tensor(expected),
        {"attn": "all", "ln": [3], "mlp": [3]},
        {"attn": True, "blocks.3.ln": 1, "blocks.3.mlp": True},
        {"attn": range(4), "ln": [3], "mlp": [3], "blocks.0.mlp": 0},
        {u: b for u, b in zip(space.units, expected)},
    ]
    masks = [resolve_mask(f, space) for f in forms]
    for f, m in zip(forms, masks):
        assert m.bits == expected, f
        assert m == masks[0]
    assert resolve_mask(masks[0], space) is masks[0]


def test_round_trips():
    rng = np.random.default_rng(0)
    for name in MASK_SPACES:
        space = MaskSpace(name, 5)
        mask = space.resolve(rng.integers(0, 2, space.n_bits))
        assert space.resolve(mask.to_string()) == mask
        assert space.resolve(mask.to_dict()) == mask
        params = dict(zip(space.bit_names, mask.bits), lr=1e-3)
        assert space.mask_from_params(params) == mask
        assert set(mask.trainable_units) == {u for u, b in mask.to_dict().items() if b}


def test_suggest_with_optuna_trial():
    optuna = pytest.importorskip("optuna")
    space = MaskSpace("ln-attn-mlp", 2)
    wanted = space.resolve({"mlp": "all"})
    trial = optuna.trial.FixedTrial(dict(zip(space.sample_names(), wanted.bits)))
    assert space.suggest(trial) == wanted

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    mask = space.suggest(trial)
    assert space.mask_from_params(trial.params) == mask


def test_describe():
    space = MaskSpace("ln-attn-mlp", 12)
    assert space.resolve({"attn": "all", "mlp": [3, 7]}).describe() == "ln: - | attn: 0-11 | mlp: 3,7"
    assert space.resolve({"ln": [0, 1, 2, 5, 9, 10]}).describe() == "ln: 0-2,5,9-10 | attn: - | mlp: -"
    assert MaskSpace("block", 3).resolve("full").describe() == "full: block: 0-2 | + *"
    assert MaskSpace("block", 3).resolve("111").describe() == "block: 0-2"
    assert "*bias*" in space.resolve("bitfit").describe()


@pytest.mark.parametrize("name", MASK_SPACES)
def test_presets(name):
    space = MaskSpace(name, 3)
    supported = space.supported_presets()
    assert {"full", "linear", "bitfit"} <= set(supported)
    for preset in supported:
        mask = space.resolve(preset)
        assert mask.preset == preset
        kinds = space.unit_kinds * space.depth
        if preset == "full":
            assert all(mask.bits)
        elif preset in ("linear", "bitfit"):
            assert not any(mask.bits)
        elif preset == "attention":
            assert mask.bits == tuple(int(k == "attn") for k in kinds)
        elif preset == "layernorm":
            assert mask.bits == tuple(int(k in ("ln", "norm1", "norm2")) for k in kinds)
    assert space.resolve("bitfit").extra_patterns == ("*bias*",)
    assert space.resolve("full").extra_patterns == ("*",)


def test_preset_equals_its_bits_and_patterns():
    space = MaskSpace("ln-attn-mlp", 3)
    by_hand = Mask(space, space.resolve({"attn": "all"}).bits, extra_patterns=("pos_embed",))
    assert space.resolve("attention") == by_hand
    assert hash(space.resolve("attention")) == hash(by_hand)
    assert space.resolve("bitfit") != space.resolve("linear")  # the extra patterns differ
    # The all-ones bit string is "every block unit"; the preset is ERM (embeddings too).
    assert space.resolve("111" * 3) != space.resolve("full")


# The public FairTune code's baselines (get_masked_model in utilities/utils.py), written
# as its name tests: what each preset must train, head always included.
REFERENCE_PRESETS = {
    "full": lambda name: True,
    "linear": lambda name: name.startswith("head."),
    "attention": lambda name: ".attn." in name or name == "pos_embed" or name.startswith("head."),
    "layernorm": lambda name: "norm" in name or name.startswith("head."),
    "bitfit": lambda name: "bias" in name or name.startswith("head."),
}


@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
@pytest.mark.parametrize("model_kwargs", [{}, {"reg_tokens": 1, "global_pool": "avg", "fc_norm": True},
                                          {"qk_norm": True}])
def test_presets_match_reference_definitions(preset, model_kwargs):
    model = tiny_vit(depth=2, layer_scale=False, **model_kwargs)
    apply_mask(model, MaskSpace.from_model("ln-attn-mlp", model).resolve(preset))
    expected = {n for n, _ in model.named_parameters() if REFERENCE_PRESETS[preset](n)}
    assert trainable(model) == expected


def test_attention_preset_keeps_layer_scale_with_attention():
    # The one documented difference from the reference: LayerScale ls1 scales the
    # attention branch, so attention tuning trains it too (ViT-B has no LayerScale).
    model = tiny_vit(depth=2, layer_scale=True)
    apply_mask(model, MaskSpace.from_model("ln-attn-mlp", model).resolve("attention"))
    assert {"blocks.0.ls1.gamma", "blocks.1.ls1.gamma"} <= trainable(model)
    assert not any(".ls2." in n for n in trainable(model))


def test_full_preset_trains_every_parameter():
    model = tiny_vit(depth=2)
    info = apply_mask(model, MaskSpace.from_model("ln-attn-mlp", model).resolve("full"))
    assert info["n_trainable"] == info["n_total"] == sum(p.numel() for p in model.parameters())
    assert {"pos_embed", "cls_token", "patch_embed.proj.weight", "norm.weight"} <= trainable(model)


def test_preset_descriptions_cover_presets():
    assert set(PRESETS) == set(PRESET_DESCRIPTIONS) == {"full", "linear", "attention", "layernorm", "bitfit"}
    assert all(isinstance(d, str) and d for d in PRESET_DESCRIPTIONS.values())


def test_preset_mask_moves_between_spaces():
    mask = MaskSpace("ln-attn-mlp", 2).resolve("attention")
    moved = resolve_mask(mask, MaskSpace("norm1-attn-norm2-mlp", 2))
    assert moved.preset == "attention" and moved.to_string() == "01000100"


S3 = MaskSpace("ln-attn-mlp", 4)  # 12 bits


@pytest.mark.parametrize(
    "mask, space, exc, msg",
    [
        ("0101", S3, ValueError, r"bit string has length 4 but mask space 'ln-attn-mlp' with depth 4 needs 12 bits"),
        ([0, 1] * 7, S3, ValueError, r"`mask` has 14 entries but .* needs 12"),
        ([0, 1, 2] + [0] * 9, S3, ValueError, r"only 0/1 or booleans; 1 entries are not binary .*2: 2"),
        ([0.5] * 12, S3, ValueError, r"not binary"),
        (np.zeros((2, 6)), S3, ValueError, r"one-dimensional with 12 entries .*shaped \(4, 3\)"),
        ("atention", S3, ValueError, r"neither a preset nor a bit string.*'full'.*Did you mean 'attention'"),
        ("attention", MaskSpace("ln", 4), ValueError,
         r"'attention' cannot be expressed in mask space 'ln'.*\['ln-attn-mlp', 'attn', 'norm1-attn-norm2-mlp'\]"),
        ("layernorm", MaskSpace("block", 4), ValueError,
         r"'layernorm' cannot be expressed in mask space 'block'.*'ln'"),
        ({"mlpp": "all"}, S3, ValueError, r"unknown key 'mlpp'.*\['ln', 'attn', 'mlp'\].*Did you mean 'mlp'"),
        ({"norm1": "all"}, S3, ValueError, r"unknown key 'norm1'"),
        ({"blocks.4.attn": 1}, S3, ValueError, r"block index 4 is out of range.*0 to 3"),
        ({"attn": [1, 4]}, S3, ValueError, r"block index 4 out of range: the model has 4 blocks"),
        ({"attn": [-1]}, S3, ValueError, r"block index -1 out of range"),
        ({"attn": 2}, S3, ValueError, r"got the integer 2; write \[2\]"),
        ({"attn": "some"}, S3, ValueError, r"must be 'all', 'none', True/False or a list"),
        ({"blocks.0.attn": 2}, S3, ValueError, r"`mask`\['blocks.0.attn'\] must be 0/1"),
        (None, S3, TypeError, r"`mask` must be a preset name"),
        (MaskSpace("attn", 4).resolve("1010"), S3, ValueError, r"made for MaskSpace\('attn', depth=4\)"),
        ("full", "ln-attn-mlp", TypeError, r"`space` must be a MaskSpace"),
    ],
)
def test_resolve_errors(mask, space, exc, msg):
    with pytest.raises(exc, match=msg):
        resolve_mask(mask, space)


def test_long_values_are_abbreviated_in_errors():
    with pytest.raises(ValueError) as info:
        resolve_mask([0, 1] * 500, S3)
    assert len(str(info.value)) < 400


def test_mask_validates_bits():
    with pytest.raises(ValueError, match=r"`bits` must hold 12 entries"):
        Mask(S3, (0, 1))
    with pytest.raises(ValueError, match=r"`preset` must be None"):
        Mask(S3, (0,) * 12, preset="nope")


# --------------------------------------------------------------------------- apply_mask


@pytest.mark.parametrize("name", MASK_SPACES)
def test_apply_mask_matches_definition(name):
    model = tiny_vit(depth=3, layer_scale=True)
    space = MaskSpace.from_model(name, model)
    rng = np.random.default_rng(1)
    masks = [space.resolve(p) for p in space.supported_presets()]
    masks += [space.resolve(rng.integers(0, 2, space.n_bits)) for _ in range(4)]
    for mask in masks:
        info = apply_mask(model, mask)
        assert trainable(model) == expected_trainable(model, mask), mask
        assert set(info["trainable_names"]) == trainable(model)
        assert info["n_trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert info["n_total"] == sum(p.numel() for p in model.parameters())


def test_apply_mask_flags_and_reset():
    model = tiny_vit(depth=2, reg_tokens=1, global_pool="avg", fc_norm=True)
    space = MaskSpace.from_model("ln-attn-mlp", model)
    linear = space.resolve("linear")
    apply_mask(model, space.resolve("full"))
    apply_mask(model, linear)  # must also freeze what was trainable before
    assert trainable(model) == {"head.weight", "head.bias"}
    apply_mask(model, linear, train_embeddings=True, train_final_norm=True)
    assert trainable(model) == expected_trainable(model, linear, embeddings=True, final_norm=True)
    assert {"reg_token", "cls_token", "pos_embed", "fc_norm.weight"} <= trainable(model)


def test_bitfit_trains_every_bias_and_head():
    model = tiny_vit(depth=2)
    apply_mask(model, MaskSpace.from_model("ln-attn-mlp", model).resolve("bitfit"))
    names = trainable(model)
    assert names == {n for n, _ in model.named_parameters() if n.startswith("head.") or n.endswith(".bias")}
    assert "patch_embed.proj.bias" in names and "norm.bias" in names


class NotAViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.head = nn.Linear(2, 2)


@pytest.mark.parametrize(
    "model, mask, kwargs, msg",
    [
        (tiny_vit(depth=3), MaskSpace("attn", 2).resolve("full"), {},
         r"made for depth 2 .* but the model has 3 blocks"),
        (nn.Linear(2, 2), MaskSpace("attn", 2).resolve("full"), {}, r"does not fit Linear.*no recognisable"),
        (NotAViT(), MaskSpace("attn", 2).resolve("full"), {}, r"does not fit NotAViT: 2 units own no parameter"),
        (tiny_vit(depth=2), MaskSpace("attn", 2).resolve("linear"), {"head_patterns": ("classifier.*",)},
         r"head pattern 'classifier.\*' .*matches no parameter"),
        (tiny_vit(depth=2, layer_scale=False), Mask(MaskSpace("attn", 2), (0, 0), extra_patterns=("blocks.*.gamma",)),
         {},
         r"extra pattern 'blocks.\*.gamma'"),
    ],
)
def test_apply_mask_errors(model, mask, kwargs, msg):
    before = trainable(model)
    with pytest.raises(ValueError, match=msg):
        apply_mask(model, mask, **kwargs)
    assert trainable(model) == before  # raised before touching the model


def test_apply_mask_needs_a_mask():
    with pytest.raises(TypeError, match=r"`mask` must be a Mask.*resolve_mask"):
        apply_mask(tiny_vit(depth=2), "full")


# --------------------------------------------------------------------------- frozen prefix


def first_trainable_half(model):
    """Smallest half-block index holding a trainable parameter, from the model itself."""
    depth = len(model.blocks)
    for name, p in model.named_parameters():
        if p.requires_grad and name.split(".")[0] in ("patch_embed", "pos_embed", "cls_token", "reg_token"):
            return 0
    halves = [
        2 * int(n.split(".")[1]) + (n.split(".")[2] not in FIRST_HALF)
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("blocks.")
    ]
    return min(halves, default=2 * depth)


@pytest.mark.parametrize("name", MASK_SPACES)
def test_frozen_prefix_agrees_with_applied_mask(name):
    model = tiny_vit(depth=4, layer_scale=True)
    space = MaskSpace.from_model(name, model)
    rng = np.random.default_rng(2)
    masks = [space.resolve(p) for p in space.supported_presets()]
    # sparse masks, whose prefixes are long
    masks += [space.resolve((rng.random(space.n_bits) < 0.15).astype(int)) for _ in range(8)]
    masks.append(Mask(space, (0,) * space.n_bits, extra_patterns=("blocks.2.mlp.fc2.*",)))
    masks.append(Mask(space, (0,) * space.n_bits, extra_patterns=("*.bias",)))  # reaches patch_embed.proj.bias
    for mask in masks:
        for emb in (False, True):
            apply_mask(model, mask, train_embeddings=emb)
            want = first_trainable_half(model)
            assert frozen_prefix_length(mask, train_embeddings=emb) == want, (mask, emb)
            assert frozen_prefix_length(mask, train_embeddings=emb, model=model) == want, (mask, emb)


def test_frozen_prefix_extremes():
    space = MaskSpace("ln-attn-mlp", 12)
    assert frozen_prefix_length(space.resolve("linear")) == 24
    assert frozen_prefix_length(space.resolve("linear"), train_embeddings=True) == 0
    assert frozen_prefix_length(space.resolve("bitfit")) == 0
    assert frozen_prefix_length(space.resolve("full")) == 0
    # LN and attention of block 5 frozen, its MLP trained: cache after the attention branch
    assert frozen_prefix_length(space.resolve({"mlp": [5, 9]})) == 11
    with pytest.raises(TypeError, match=r"`mask` must be a Mask"):
        frozen_prefix_length("linear")


def test_error_messages_name_the_parameter():
    for bad in ("2", [3] * 12, {"x": 1}):
        with pytest.raises(ValueError, match=re.escape("`mask`")):
            resolve_mask(bad, S3)
