"""Mask spaces across timm transformer families, and user spaces by name patterns.

Expected values are derived from the parameter names themselves (which block
and which member of the block a name lies in), independently of how
skfairtune.masks reads the layout.
"""

import pickle
import re

import numpy as np
import pytest
import timm
from torch import nn

from skfairtune.masks import Mask, MaskSpace, apply_mask, frozen_prefix_length

TINY = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=2)
SWIN = dict(img_size=32, patch_size=4, embed_dim=16, depths=(2, 1), num_heads=(2, 2), window_size=4, num_classes=2)

# name -> (timm model, kwargs, expected block labels, whether the forward can be split)
FAMILIES = {
    "vit": ("vit_tiny_patch16_224", TINY, ["blocks.0", "blocks.1"], True),
    "vit-registers-avg-layerscale": (
        "vit_tiny_patch16_224",
        dict(TINY, reg_tokens=2, class_token=False, global_pool="avg", init_values=1e-5),
        ["blocks.0", "blocks.1"], True),
    "deit": ("deit_tiny_patch16_224", TINY, ["blocks.0", "blocks.1"], True),
    "deit-distilled": ("deit_tiny_distilled_patch16_224", TINY, ["blocks.0", "blocks.1"], False),
    "beit": ("beit_base_patch16_224", TINY, ["blocks.0", "blocks.1"], False),
    "eva02": ("eva02_tiny_patch14_224", TINY, ["blocks.0", "blocks.1"], False),
    "eva02-layerscale": ("eva02_tiny_patch14_224", dict(TINY, init_values=0.1), ["blocks.0", "blocks.1"], False),
    "swin": ("swin_tiny_patch4_window7_224", SWIN, ["s0.b0", "s0.b1", "s1.b0"], False),
}

# Which unit kind owns each member of a block, per space (the paper's spaces).
MEMBER_KIND = {
    "ln-attn-mlp": {"norm1": "ln", "norm2": "ln", "attn": "attn", "ls1": "attn", "gamma_1": "attn",
                    "mlp": "mlp", "ls2": "mlp", "gamma_2": "mlp"},
    "norm1-attn-norm2-mlp": {"norm1": "norm1", "norm2": "norm2", "attn": "attn", "ls1": "attn",
                             "gamma_1": "attn", "mlp": "mlp", "ls2": "mlp", "gamma_2": "mlp"},
    "block": {m: "block" for m in ("norm1", "norm2", "attn", "ls1", "gamma_1", "mlp", "ls2", "gamma_2")},
}
BLOCK_NAME = re.compile(r"^(?:layers\.(\d+)\.)?blocks\.(\d+)\.([^.]+)")

# The public FairTune code's baselines as name tests; the head includes distilled DeiT's head_dist.
HEAD = ("head.", "head_dist.")
REFERENCE_PRESETS = {
    "full": lambda n: True,
    "linear": lambda n: n.startswith(HEAD),
    "attention": lambda n: ".attn." in n or n == "pos_embed" or n.startswith(HEAD),
    "layernorm": lambda n: "norm" in n or n.startswith(HEAD),
    "bitfit": lambda n: "bias" in n or n.startswith(HEAD),
}


def build(family):
    name, kwargs, _, _ = FAMILIES[family]
    return timm.create_model(name, pretrained=False, **kwargs)


def owner_of(param, space_name):
    """The unit a parameter belongs to, from its name: '<block label>.<kind>' or None."""
    found = BLOCK_NAME.match(param)
    if found is None:
        return None
    stage, block, member = found.groups()
    label = f"blocks.{block}" if stage is None else f"s{stage}.b{block}"
    kind = MEMBER_KIND[space_name].get(member)
    return None if kind is None else f"{label}.{kind}"


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- from_model


@pytest.mark.parametrize("family", FAMILIES)
def test_bit_names_follow_the_blocks(family):
    model = build(family)
    labels = FAMILIES[family][2]
    space = MaskSpace.from_model("ln-attn-mlp", model)
    assert space.blocks == tuple(labels)
    assert space.units == [f"{b}.{k}" for b in labels for k in ("ln", "attn", "mlp")]
    assert space.bit_names[1] == f"mask__{labels[0]}.attn"
    assert space.depth == len(labels)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("space_name", sorted(MEMBER_KIND))
def test_units_partition_block_parameters(family, space_name):
    model = build(family)
    space = MaskSpace.from_model(space_name, model)
    owners = {u: set() for u in space.units}
    for param, _ in model.named_parameters():
        found = [u for u in space.units if any(re.fullmatch(_glob(p), param) for p in space.param_patterns(u))]
        expected = owner_of(param, space_name)
        assert found == ([] if expected is None else [expected]), param
        for u in found:
            owners[u].add(param)
    assert all(owners.values()), "every unit owns a parameter"


def _glob(pattern):
    return re.escape(pattern).replace(r"\*", ".*")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", sorted(REFERENCE_PRESETS))
def test_presets_keep_the_reference_meaning(family, preset):
    model = build(family)
    apply_mask(model, MaskSpace.from_model("ln-attn-mlp", model).resolve(preset))
    expected = {n for n, _ in model.named_parameters() if REFERENCE_PRESETS[preset](n)}
    if preset == "attention":
        # The documented difference: LayerScale of the attention branch trains with it.
        expected |= {n for n, _ in model.named_parameters() if re.search(r"\.(ls1\.gamma|gamma_1)$", n)}
    assert trainable(model) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_apply_mask_trains_the_set_units(family):
    model = build(family)
    space = MaskSpace.from_model("norm1-attn-norm2-mlp", model)
    rng = np.random.default_rng(0)
    for bits in [rng.integers(0, 2, space.n_bits) for _ in range(3)]:
        mask = space.resolve(bits)
        info = apply_mask(model, mask)
        on = set(mask.trainable_units)
        expected = {n for n, _ in model.named_parameters()
                    if owner_of(n, space.name) in on or n.startswith(HEAD)}
        assert trainable(model) == expected == set(info["trainable_names"])
        assert info["n_trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_embeddings_and_between_stage_layers_stay_frozen_in_searched_masks():
    swin = build("swin")
    space = MaskSpace.from_model("ln-attn-mlp", swin)
    apply_mask(swin, space.resolve("1" * space.n_bits))
    frozen = {n for n, p in swin.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in swin.named_parameters() if BLOCK_NAME.match(n) is None
                      and not n.startswith("head.")}
    assert any(".downsample." in n for n in frozen) and "patch_embed.proj.weight" in frozen
    distilled = build("deit-distilled")
    apply_mask(distilled, MaskSpace.from_model("attn", distilled).resolve("linear"), train_embeddings=True)
    assert {"dist_token", "cls_token", "pos_embed", "head_dist.weight"} <= trainable(distilled)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_cache_only_where_the_forward_splits(family):
    model = build(family)
    space = MaskSpace.from_model("ln-attn-mlp", model)
    splits = FAMILIES[family][3]
    assert (space.prefix_cache_reason is None) is splits
    linear = space.resolve("linear")
    assert frozen_prefix_length(linear) == (2 * space.depth if splits else 0)
    assert frozen_prefix_length(linear, model=model) == (2 * space.depth if splits else 0)
    # A space that does not know its model (built from a depth) defers to the model.
    plain = MaskSpace("ln-attn-mlp", space.depth).resolve("linear")
    assert frozen_prefix_length(plain, model=model) == (2 * space.depth if splits else 0)


def test_swin_reason_names_the_stages():
    assert "hierarchical" in MaskSpace.from_model("attn", build("swin")).prefix_cache_reason
    assert "Eva" in MaskSpace.from_model("attn", build("eva02")).prefix_cache_reason


def test_swin_space_resolution_repr_and_pickle():
    swin = build("swin")
    space = MaskSpace.from_model("ln-attn-mlp", swin)
    assert repr(space) == "MaskSpace('ln-attn-mlp', stages=(2, 1))"
    assert space.stages == (2, 1)
    mask = space.resolve({"s1.b0.mlp": 1, "attn": [0]})
    assert mask.trainable_units == ("s0.b0.attn", "s1.b0.mlp")
    assert mask.describe() == "ln: - | attn: 0 | mlp: 2"
    again = pickle.loads(pickle.dumps(mask))
    assert again == mask and again.space.prefix_cache_reason == space.prefix_cache_reason
    assert space != MaskSpace("ln-attn-mlp", 3)  # same bit count, other layout
    assert space.param_patterns("s1.b0.attn")[0] == "layers.1.blocks.0.attn.*"
    with pytest.raises(ValueError, match=r"no block 's2.b0'.*'s0.b0' \.\.\. 's1.b0'"):
        space.resolve({"s2.b0.attn": 1})
    # a mask of another layout with the same number of bits is refused, not misapplied
    with pytest.raises(ValueError, match=r"made for MaskSpace\('ln-attn-mlp', depth=3\).*layout is"):
        apply_mask(swin, MaskSpace("ln-attn-mlp", 3).resolve("attention"))


def test_bit_strings_travel_between_a_plain_space_and_the_model_space():
    # The search stores sampled masks as bit strings; they resolve in the model's space.
    eva = build("eva02")
    space = MaskSpace.from_model("ln-attn-mlp", eva)
    assert space == MaskSpace("ln-attn-mlp", 2)  # the cache reason describes the model only
    assert MaskSpace.from_model(space, eva) is space


# --------------------------------------------------------------------------- from_patterns

PATTERNS = {"qkv": r"blocks\.(\d+)\.attn\.qkv\.", "mlp": r"blocks\.(\d+)\.mlp\."}


def test_from_patterns_units_and_apply():
    vit = build("vit")
    space = MaskSpace.from_patterns(vit, PATTERNS)
    assert space.name == "patterns"
    assert space.units == ["blocks.0.qkv", "blocks.0.mlp", "blocks.1.qkv", "blocks.1.mlp"]
    mask = space.resolve({"qkv": [1], "mlp": [0]})
    apply_mask(vit, mask)
    assert trainable(vit) == {n for n, _ in vit.named_parameters()
                              if re.match(r"blocks\.1\.attn\.qkv\.|blocks\.0\.mlp\.|head\.", n)}
    # the MLP of block 0 is the first trained thing: the cache keeps block 0's attention half
    assert frozen_prefix_length(mask) == frozen_prefix_length(mask, model=vit) == 1
    assert pickle.loads(pickle.dumps(space)) == space
    assert space != MaskSpace.from_patterns(vit, {"qkv": PATTERNS["qkv"]})
    assert space.supported_presets() == ("full", "linear", "bitfit")


def test_from_patterns_two_groups_give_stages():
    swin = build("swin")
    space = MaskSpace.from_patterns(swin, {"attn": r"layers\.(\d+)\.blocks\.(\d+)\.attn\."}, strict=False)
    assert space.units == ["s0.b0.attn", "s0.b1.attn", "s1.b0.attn"]
    assert space.prefix_cache_reason is not None
    assert frozen_prefix_length(space.resolve("linear")) == 0


def test_from_patterns_strict_accepts_a_full_cover():
    vit = build("vit")
    space = MaskSpace.from_patterns(vit, {"norms": r"blocks\.(\d+)\.norm", "attn": r"blocks\.(\d+)\.attn\.",
                                          "mlp": r"blocks\.(\d+)\.mlp\."}, strict=True)
    assert space.n_bits == 6


@pytest.mark.parametrize(
    "patterns, kwargs, msg",
    [
        ({"attn": r"layers\.(\d+)\.attn"}, {},
         r"`patterns`\['attn'\]='layers\\\\.\(\\\\d\+\)\\\\.attn' matched no parameter; parameter names look like "
         r"\['cls_token'"),
        ({"attn": r"blocks\.\d+\.attn"}, {}, r"must have one capturing group for the block index.*it has 0"),
        ({"attn": r"blocks\.(\w+)\.attn\.(qkv)"}, {}, r"captured \('0', 'qkv'\) .*digits only"),
        ({"attn": r"blocks\.(\d+)\.attn", "all": r"blocks\.(\d+)\."}, {},
         r"parameter 'blocks.0.norm1.weight' is matched by both|is matched by both `patterns`\['attn'\]"),
        ({"attn": r"blocks\.((\d+)"}, {}, r"`patterns`\['attn'\] must be a regular expression"),
        ({}, {}, r"`patterns` must be a non-empty mapping"),
        ({"attn.x": r"blocks\.(\d+)\.attn"}, {}, r"keys are unit kinds and must be identifiers.*'attn.x'"),
        ({"attn": r"blocks\.(1)\.attn", "mlp": r"blocks\.(\d+)\.mlp"}, {},
         r"1 units own no parameter \('attn' in block 0\)"),
        ({"qkv": r"blocks\.(\d+)\.attn\.qkv"}, {"strict": True},
         r"`strict=True` but 20 parameters .* belong to no unit: \['blocks.0.norm1.weight', .*, \.\.\. and 12 more\]"),
        ({"qkv": r"blocks\.(\d+)\.attn\.qkv"}, {"strict": "yes"}, r"`strict` must be True or False, got 'yes'"),
        ({"attn": r"blocks\.(\d+)\.attn", "mlp": r"(\d+)\.(\d+)\.mlp"}, {}, r"the same number of capturing groups"),
    ],
)
def test_from_patterns_errors(patterns, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        MaskSpace.from_patterns(build("vit"), patterns, **kwargs)


# --------------------------------------------------------------------------- bad models


class Blocks(nn.Module):
    """A model whose blocks have no timm members (no norm1/attn/mlp)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        self.head = nn.Linear(2, 2)


@pytest.mark.parametrize(
    "model, space, msg",
    [
        (nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "attn",
         r"`model` \(Sequential\) has no recognisable transformer blocks.*parameter names look like "
         r"\['0.weight', '0.bias', '2.weight'|no recognisable transformer blocks.*from_patterns"),
        (Blocks(), "ln-attn-mlp", r"mask space 'ln-attn-mlp' does not fit Blocks: 6 units own no parameter"),
        (build("vit"), "heads", r"`name` must be one of .*'heads'"),
        (3, "attn", r"`model` must be a torch.nn.Module"),
    ],
)
def test_from_model_errors(model, space, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        MaskSpace.from_model(space, model)


def test_block_space_fits_any_blocks():
    # the whole-block space needs no timm member names
    space = MaskSpace.from_model("block", Blocks())
    assert space.units == ["blocks.0.block", "blocks.1.block"]
    with pytest.raises(ValueError, match=r"does not fit Linear"):
        MaskSpace.from_model(space, nn.Linear(2, 2))


def test_pattern_mask_refused_on_another_model():
    mask = MaskSpace.from_patterns(build("vit"), PATTERNS).resolve("linear")
    with pytest.raises(ValueError, match=r"made for another model: its units name parameters \['blocks.0.attn"):
        apply_mask(build("swin"), mask)
    assert isinstance(mask, Mask)


# --------------------------------------------------------------------------- end to end


def swin_backbone(num_classes=2):
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=num_classes,
                             img_size=32, patch_size=4, embed_dim=16, depths=(2, 1), num_heads=(2, 2),
                             window_size=4)


def eva_backbone(num_classes=2):
    return timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=num_classes,
                             img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2)


def distilled_deit_backbone(num_classes=2):
    return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=num_classes,
                             img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def images():
    from skfairtune.datasets import make_biased_images

    return make_biased_images(32, image_size=32, minority_fraction=0.5, random_state=0)


@pytest.mark.parametrize("backbone", [swin_backbone, eva_backbone, distilled_deit_backbone])
def test_classifier_fits_and_predicts_every_family(images, backbone):
    from skfairtune import FairTuneClassifier

    clf = FairTuneClassifier(model=backbone, pretrained=False, mask="attention", max_epochs=1, batch_size=16,
                             random_state=0)
    clf.fit(images.images, images.target)
    assert clf.predict_proba(images.images[:5]).shape == (5, 2)
    assert set(clf.predict(images.images)) <= set(images.target)
    assert clf.mask_.space == MaskSpace.from_model("ln-attn-mlp", backbone())
    expected = {n for n, _ in backbone().named_parameters() if REFERENCE_PRESETS["attention"](n)}
    module_names = {n.split(".", 2)[-1] for n, p in clf.net_.module_.named_parameters() if p.requires_grad}
    assert expected <= module_names  # the wrapped backbone trains the preset's parameters
    # No frozen-prefix cache: the forward of these models cannot be split.
    clf = FairTuneClassifier(model=backbone, pretrained=False, mask="linear", max_epochs=1, batch_size=16,
                             frozen_cache=True, random_state=0)
    with pytest.warns(UserWarning, match=r"frozen_cache=True but the cache is not used: .*cannot be split"):
        clf.fit(images.images, images.target)
    assert clf.frozen_prefix_ == 0 and "cannot be split" in clf.frozen_cache_reason_


@pytest.mark.parametrize("backbone", [swin_backbone, eva_backbone])
def test_search_runs_over_every_family(images, backbone):
    from skfairtune import FairTuneClassifier, FairTuneSearchCV

    estimator = FairTuneClassifier(model=backbone, pretrained=False, max_epochs=1, batch_size=16, random_state=0)
    search = FairTuneSearchCV(estimator, n_trials=3, baselines=["linear"], baseline_lrs=[1e-3], random_state=0)
    search.fit(images.images, images.target, sensitive_features=images.sensitive_features)
    space = MaskSpace.from_model("ln-attn-mlp", backbone())
    assert search.mask_space_ == space
    assert search.n_trials_ == 3
    sampled = [m for m in search.cv_results_["param_mask"][1:]]
    assert all(len(m) == space.n_bits and set(m) <= {"0", "1"} for m in sampled)
    assert search.best_mask_.space == space
    assert search.predict(images.images[:4]).shape == (4,)


def test_concept_page_examples_run():
    """The >>> examples of docs/concepts/masks.md run as written."""
    import doctest
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "concepts" / "masks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert any("from_patterns" in b for b in blocks) and any("stages=" in b for b in blocks)
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    # One test over all blocks: later examples use names the earlier ones defined.
    runner.run(parser.get_doctest("\n".join(blocks), {}, "masks.md", "masks.md", 0))
    assert runner.failures == 0 and runner.tries > 5


def test_pattern_space_as_mask_space_in_classifier_and_search():
    from sklearn.base import clone

    from skfairtune import FairTuneClassifier, FairTuneSearchCV
    from skfairtune.datasets import make_biased_images

    data = make_biased_images(32, image_size=16, minority_fraction=0.5, random_state=0)
    kwargs = {k: v for k, v in TINY.items() if k != "num_classes"}
    space = MaskSpace.from_patterns(build("vit"), PATTERNS)
    clf = FairTuneClassifier(model="vit_tiny_patch16_224", model_kwargs=kwargs, pretrained=False, mask_space=space,
                             mask={"qkv": [1]}, max_epochs=1, batch_size=16, random_state=0)
    clf = clone(clf).fit(data.images, data.target)
    assert clf.mask_.trainable_units == ("blocks.1.qkv",)
    assert clf.frozen_prefix_ == 2  # block 0 and the first half of block 1 hold nothing trainable
    search = FairTuneSearchCV(clf, space=space, n_trials=3, baselines=["linear"], baseline_lrs=[1e-3],
                              random_state=0)
    search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert search.mask_space_ == space
    assert all(len(m) == 4 for m in search.cv_results_["param_mask"][1:])
