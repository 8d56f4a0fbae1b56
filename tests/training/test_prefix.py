"""The frozen prefix's activation cache: shared exactly across trials, keyed, bounded."""

from __future__ import annotations

import pytest
import torch

from skfairtune.backbone._vit_split import ActivationCache
from skfairtune._training._template import TemplateStore
from skfairtune._training._trainer import Trainer, predict_proba, resolve_seed, to_model_tensor
from skfairtune.datasets import make_biased_images

from ..conftest import tiny_classifier

_STORE = TemplateStore(max_size=4)


def _prepared(mask, cache=None, key="train", **params) -> Trainer:
    """A trainer prepared as a search trial prepares one: template from the store, shared cache."""
    data = make_biased_images(64, image_size=16, random_state=0)
    clf_params = tiny_classifier(mask=mask, **params).get_params(deep=False)
    seed = resolve_seed(clf_params["random_state"])
    template = _STORE.get(clf_params, n_classes=2, seed=seed) if cache is not None else None
    return Trainer(clf_params, template=template, cache=cache).prepare(data.images, data.target, data_key=key)


@pytest.mark.parametrize("masks, expected", [
    (["linear", "linear"], {"misses": 1, "hits": 1, "partial_hits": 0}),
    # 2 blocks: "000011" freezes 2 half-blocks, linear all 4: the second continues from the first.
    (["000011", "linear"], {"misses": 1, "hits": 0, "partial_hits": 1}),
    # A longer prefix cannot serve a shorter one.
    (["linear", "000011"], {"misses": 2, "hits": 0, "partial_hits": 0}),
])
def test_cache_shares_prefixes_exactly(masks, expected):
    cache = ActivationCache(2**30)
    for mask in masks:
        shared = _prepared(mask, cache)
        alone = _prepared(mask)
        assert shared.frozen_prefix == alone.frozen_prefix > 0
        torch.testing.assert_close(shared.dataset.X, alone.dataset.X, rtol=0, atol=1e-6)
    stats = cache.stats()
    assert {k: stats[k] for k in expected} == expected


def test_cache_keys_on_weights_and_data():
    cache = ActivationCache(2**30)
    _prepared("linear", cache, random_state=0)
    _prepared("linear", cache, random_state=1)  # another random backbone: another template
    _prepared("linear", cache, key="valid", random_state=0)  # other data key
    assert cache.stats()["misses"] == 3 and cache.stats()["hits"] == 0
    _prepared("linear", cache, random_state=0)
    assert cache.stats()["hits"] == 1


def test_cache_never_exceeds_its_bound():
    first = _prepared("linear")
    size = first.dataset.X.element_size() * first.dataset.X.nelement()
    cache = ActivationCache(int(1.5 * size))
    for key in ("a", "b", "c"):
        _prepared("linear", cache, key=key)
        assert cache.bytes <= cache.max_bytes
    stats = cache.stats()
    assert stats["entries"] == 1 and stats["evictions"] == 2 and stats["peak_bytes"] <= stats["max_bytes"]
    small = ActivationCache(size - 1)
    _prepared("linear", small)
    assert small.stats()["rejected"] == 1 and small.bytes == 0


def test_trials_copy_the_template_and_never_train_it():
    store = TemplateStore()
    params = tiny_classifier(mask="full", max_epochs=1).get_params(deep=False)
    template = store.get(params, n_classes=2, seed=0)
    before = {k: v.clone() for k, v in template.backbone.state_dict().items()}
    data = make_biased_images(32, image_size=16, random_state=0)
    trainer = Trainer(params, template=template).prepare(data.images, data.target)
    trainer.step(1)
    after = template.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert store.get(params, n_classes=2, seed=0) is template  # built once, reused
    assert store.get(params, n_classes=2, seed=1) is not template


def test_split_forward_is_scoped():
    trainer = _prepared("linear")
    module = trainer.net.module_
    assert module.suffix.start == 0
    with module.inputs_after(trainer.frozen_prefix):
        assert module.suffix.start == trainer.frozen_prefix
        with module.inputs_after(0):
            assert module.suffix.start == 0
        assert module.suffix.start == trainer.frozen_prefix
    assert module.suffix.start == 0


def test_bf16_training_stores_the_prefix_in_bf16_and_predicts_like_the_whole_model():
    trainer = _prepared("linear", precision="bf16")
    assert trainer.frozen_prefix > 0 and trainer.dataset.X.dtype == torch.bfloat16
    data = make_biased_images(64, image_size=16, random_state=0)
    cached = trainer.predict_proba(trainer.model_inputs(data.images[:16]))
    images = to_model_tensor(data.images[:16], trainer.params, trainer.input_config, trainer.geometry)
    whole = predict_proba(trainer.net, images)  # frozen_prefix=0: the whole model from the images
    # Same model, the prefix rounded to bf16 once: agreement at bf16's precision.
    assert abs(cached - whole).max() < 0.05


@pytest.mark.parametrize("first, out_dtype", [(0, torch.float32), (0, torch.bfloat16), (2, torch.float32)])
def test_prefix_activations_in_uneven_batches_equal_one_pass(first, out_dtype):
    """Written batch by batch into one tensor (no second copy), the result is the whole-set pass."""
    import timm

    from skfairtune._training._net import ImageModel
    from skfairtune.backbone._vit_split import forward_prefix, run_half_blocks

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=16, depth=2,
                            num_heads=2, num_classes=2)
    model = ImageModel(vit, (0.5,) * 3, (0.5,) * 3).eval()
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        x = images if first == 0 else forward_prefix(vit, model.prepare_images(images), first)
        whole = forward_prefix(vit, model.prepare_images(images), 4) if first == 0 else run_half_blocks(vit, x, first, 4)
    out = model.prefix_activations(x, first, 4, batch_size=4, device=torch.device("cpu"), autocast_dtype=None,
                                   out_dtype=out_dtype)
    assert out.shape == whole.shape and out.dtype == out_dtype
    torch.testing.assert_close(out, whole.to(out_dtype))  # torch's tolerances for the dtype
    with pytest.raises(ValueError, match="prefix_activations needs at least one input; got 0"):
        model.prefix_activations(images[:0], 0, 4, batch_size=4, device=torch.device("cpu"), autocast_dtype=None)
