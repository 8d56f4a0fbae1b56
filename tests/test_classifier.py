import pickle
import re

import numpy as np
import pytest
import sklearn
import timm
import torch

from skfairtune._training._template import ModelTemplate
from PIL import Image
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skfairtune import FairTuneClassifier, get_fairness_scorer

from .conftest import TINY_VIT, shared_data, tiny_classifier


def test_fit_predict_shapes_and_attributes(random_images):
    X, y = random_images
    clf = tiny_classifier(mask="attention").fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(clf.predict(X)) <= {0, 1}
    assert clf.mask_.to_string() == "010010"
    assert 0 < clf.trainable_fraction_ < 1
    assert clf.n_trainable_params_ < clf.n_params_
    assert len(clf.history_) == 2
    assert clf.decision_function(X).shape == (len(X),)


def test_string_labels_and_classes(random_images):
    X, y = random_images
    labels = np.where(y == 1, "malignant", "benign")
    clf = tiny_classifier(max_epochs=1).fit(X, labels)
    assert clf.classes_.tolist() == ["benign", "malignant"]
    assert set(clf.predict(X)) <= {"benign", "malignant"}


def test_learns_a_visible_pattern(random_images):
    X, y = random_images
    clf = tiny_classifier(max_epochs=8, mask="full", lr=3e-3, batch_size=16).fit(X, y)
    assert roc_auc_score(y, clf.predict_proba(X)[:, 1]) > 0.9


@pytest.mark.parametrize("mask", ["linear", "layernorm", "attention", "full"])
def test_presets_train_nested_parameter_sets(random_images, mask):
    X, y = random_images
    clf = tiny_classifier(mask=mask, max_epochs=1).fit(X, y)
    names = clf.trainable_parameter_names_
    assert any(n.startswith("head") for n in names)
    if mask == "linear":
        assert all(n.startswith("head") for n in names)
    if mask == "attention":  # the reference's tune_attention: .attn., pos_embed and the head
        assert {n for n in names if n.startswith("blocks")} and all(
            ".attn." in n or n == "pos_embed" or n.startswith("head") for n in names)
        assert "pos_embed" in names
    if mask == "layernorm":  # the reference's tune_layernorm: every '*norm*', final norm included
        assert all("norm" in n or n.startswith("head") for n in names) and "norm.weight" in names
    if mask == "full":  # ERM: every parameter
        assert clf.n_trainable_params_ == clf.n_params_


def test_frozen_parameters_do_not_move(random_images):
    X, y = random_images
    clf = tiny_classifier(mask="attention", max_epochs=2, weight_decay=0.5).fit(X, y)
    model = clf.model_
    reference = tiny_classifier(mask="attention", max_epochs=1)
    fresh = ModelTemplate(reference.get_params(), n_classes=2, seed=0).backbone
    for (name, before), (_, after) in zip(fresh.named_parameters(), model.named_parameters()):
        if name.startswith("head"):
            continue
        if ".attn." in name or name == "pos_embed":
            assert not torch.equal(before, after), name
        else:
            assert torch.equal(before, after), name


def test_same_random_state_is_repeatable(random_images):
    X, y = random_images
    a = tiny_classifier(mask="full").fit(X, y).predict_proba(X)
    b = tiny_classifier(mask="full").fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = tiny_classifier(mask="full", random_state=1).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("mask", ["linear", "001001", "000011"])
def test_frozen_cache_matches_uncached_training(random_images, mask):
    X, y = random_images
    cached = tiny_classifier(mask=mask, frozen_cache=True, max_epochs=3).fit(X, y)
    plain = tiny_classifier(mask=mask, frozen_cache=False, max_epochs=3).fit(X, y)
    assert cached.frozen_prefix_ > 0 and plain.frozen_prefix_ == 0
    np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_frozen_cache_respects_memory_bound(random_images):
    X, y = random_images
    with pytest.warns(UserWarning, match="frozen_cache_max_mb"):
        clf = tiny_classifier(mask="linear", frozen_cache=True, frozen_cache_max_mb=1e-6).fit(X, y)
    assert clf.frozen_prefix_ == 0
    auto = tiny_classifier(mask="linear", frozen_cache="auto", frozen_cache_max_mb=1e-6).fit(X, y)
    assert auto.frozen_prefix_ == 0


def test_cache_off_with_augmentation(random_images):
    X, y = random_images
    clf = tiny_classifier(mask="linear", augment=True, max_epochs=1).fit(X, y)
    assert clf.frozen_prefix_ == 0


def _as_paths(X, tmp_path):
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / f"img_{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("kind", ["nchw_float", "tensor", "pil", "paths", "paths_array", "gray"])
def test_input_types_give_the_same_model(random_images, tmp_path, kind):
    X, y = random_images
    # crop_pct 1.0: images at the model's size are used as they are, so every encoding gives the same
    # pixels (timm's resize-and-crop would round PIL and tensor resampling differently).
    at_size = {"crop_pct": 1.0}
    reference = tiny_classifier(max_epochs=1, timm_transform=at_size).fit(X, y).predict_proba(X)
    if kind == "nchw_float":
        X_alt = X.transpose(0, 3, 1, 2).astype(np.float32) / 255
    elif kind == "tensor":
        X_alt = torch.from_numpy(X.transpose(0, 3, 1, 2).copy())
    elif kind == "pil":
        X_alt = [Image.fromarray(image) for image in X]
    elif kind == "paths":
        X_alt = _as_paths(X, tmp_path)
    elif kind == "paths_array":
        X_alt = np.array(_as_paths(X, tmp_path))
    else:
        X_alt = X[..., 0]
        X = np.repeat(X_alt[..., None], 3, axis=-1)
        reference = tiny_classifier(max_epochs=1, timm_transform=at_size).fit(X, y).predict_proba(X)
    proba = tiny_classifier(max_epochs=1, timm_transform=at_size).fit(X_alt, y).predict_proba(X_alt)
    np.testing.assert_allclose(proba, reference, atol=1e-5)


def test_images_are_resized_to_the_model(random_images):
    X, y = random_images
    big = np.repeat(np.repeat(X, 2, axis=1), 2, axis=2)  # 32 px into a 16 px model
    clf = tiny_classifier(max_epochs=1).fit(big, y)
    assert clf.predict_proba(big).shape == (len(X), 2)


def test_class_weight_balanced_reaches_the_loss(random_images):
    X, y = random_images
    y = y.copy()
    y[:20] = 0
    clf = tiny_classifier(class_weight="balanced", max_epochs=1).fit(X, y)
    weight = clf.net_.criterion_.weight
    expected = len(y) / (2 * np.bincount(y))
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6)


def test_learning_rate_follows_warmup_then_cosine(random_images):
    X, y = random_images
    clf = tiny_classifier(max_epochs=6, batch_size=48, warmup_fraction=1 / 3).fit(X, y)
    lrs = list(clf.history_[:, "lr"])
    assert lrs[0] < lrs[1]  # warm-up
    assert lrs[1] == pytest.approx(clf.lr)  # peak at the end of warm-up
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # cosine decay
    assert lrs[-1] < 0.2 * clf.lr  # decays towards zero at the last step


def test_diverging_loss_raises_named_error(random_images):
    from skfairtune._training._net import NonFiniteLossError

    X, y = random_images
    # Pixels must be valid now (floats outside [0, 1] are refused up front), so the
    # divergence comes from the learning rate.
    with pytest.raises(NonFiniteLossError, match="loss became"):
        tiny_classifier(max_epochs=1, lr=1e30).fit(X, y)


def test_checkpoint_path_loads_local_weights(tmp_path, random_images):
    X, y = random_images
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, **TINY_VIT)
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    clf = tiny_classifier(checkpoint_path=str(path), mask="linear", max_epochs=1).fit(X, y)
    model = clf.model_
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert model.head.out_features == 2


def test_pretrained_without_network_fails_at_fit_start(random_images, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    X, y = random_images
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=True, model_kwargs=dict(TINY_VIT), max_epochs=1)
    with pytest.raises(RuntimeError, match="checkpoint_path"):
        clf.fit(X, y)


@pytest.mark.parametrize(
    "params, error, message",
    [
        (dict(mask="bogus"), ValueError, "bogus"),
        (dict(mask="0101"), ValueError, "6"),
        (dict(mask="attention", mask_space="ln"), ValueError, "attention"),
        (dict(mask_space="per-head"), ValueError, "per-head"),
        (dict(lr=-1.0), ValueError, "`lr`"),
        (dict(max_epochs=0), ValueError, "`max_epochs`"),
        (dict(batch_size=2.5), ValueError, "`batch_size`"),
        (dict(frozen_cache="sometimes"), ValueError, "`frozen_cache`"),
        (dict(precision="fp8"), ValueError, "`precision`"),
        (dict(class_weight="heavy"), ValueError, "`class_weight`"),
        (dict(device="tpu:9"), ValueError, "device"),
        (dict(model=42), TypeError, "`model`"),
    ],
)
def test_bad_parameters_fail_at_fit_start(random_images, params, error, message):
    X, y = random_images
    with pytest.raises(error, match=re.escape(message)):
        tiny_classifier(**params).fit(X, y)


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((4, 16, 16, 3), np.uint8), np.array([0, 1, 0]), "4 images but y has 3"),
        (np.zeros((4, 16, 16, 3), np.uint8), np.array([1, 1, 1, 1]), "one class only"),
        (np.full((4, 16, 16, 3), np.nan, np.float32), np.array([0, 1, 0, 1]), "NaN"),
        (np.zeros((4, 16, 16, 7), np.uint8), np.array([0, 1, 0, 1]), "channel"),
        (np.zeros((0, 16, 16, 3), np.uint8), np.array([]), "empty"),
        ("image.png", np.array([0]), "single path"),
    ],
)
def test_bad_data_has_clear_errors(X, y, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny_classifier(max_epochs=1).fit(X, y)


def test_clone_get_set_params_and_pickle(random_images):
    X, y = random_images
    clf = tiny_classifier(mask="layernorm", max_epochs=1)
    cloned = clone(clf)
    assert cloned.get_params() == clf.get_params()
    cloned.set_params(lr=5e-4, mask="full")
    assert cloned.lr == 5e-4 and clf.mask == "layernorm"
    clf.fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_inside_pipeline_gridsearch_and_cross_validate(biased_data):
    X, y, s = biased_data.images, biased_data.target, biased_data.sensitive_features
    pipe = Pipeline([("identity", FunctionTransformer()), ("vit", tiny_classifier(max_epochs=1))])
    pipe.fit(X, y)
    assert pipe.predict_proba(X).shape == (len(X), 2)
    scorer = get_fairness_scorer("min_group_auc")
    with sklearn.config_context(enable_metadata_routing=True):
        grid = GridSearchCV(tiny_classifier(max_epochs=1), {"mask": ["linear", "attention"]},
                            scoring=scorer, cv=2).fit(X, y, sensitive_features=s)
        assert set(grid.cv_results_["param_mask"]) == {"linear", "attention"}
        assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
        result = cross_validate(tiny_classifier(max_epochs=1), X, y, cv=2, scoring=scorer,
                                params={"sensitive_features": s})
        assert np.isfinite(result["test_score"]).all()


@pytest.mark.slow
def test_real_ham10000_beats_chance():
    from skfairtune.datasets import load_ham10000

    root = shared_data("ham10000")
    data = load_ham10000(root, image_size=32, n_samples=1200, random_state=0)
    rng = np.random.default_rng(0)
    test = rng.random(len(data.target)) < 0.3
    clf = FairTuneClassifier(
        "vit_tiny_patch16_224", pretrained=False, mask="full", lr=1e-3, max_epochs=5, batch_size=64,
        class_weight="balanced", random_state=0,
        model_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2),
    ).fit(data.images[~test], data.target[~test])
    auc = roc_auc_score(data.target[test], clf.predict_proba(data.images[test])[:, 1])
    assert auc > 0.6, auc
