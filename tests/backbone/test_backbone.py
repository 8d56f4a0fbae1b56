"""Tests for skfairtune.backbone: building, loading weights, input config and forward segments."""

import argparse
import functools
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import ResPostBlock, VisionTransformer
from torch import nn

from skfairtune.backbone import (
    PretrainedWeightsUnavailableError,
    ViTSuffix,
    build_backbone,
    count_parameters,
    forward_prefix,
    load_checkpoint,
    model_input_config,
    supports_prefix_cache,
)
from skfairtune.masks import MaskSpace, apply_mask, frozen_prefix_length


ARCH = "vit_tiny_patch16_224"
SMALL = dict(patch_size=4, embed_dim=16, depth=2, num_heads=2)


def vit(img_size=16, num_classes=2, seed=0, **overrides):
    torch.manual_seed(seed)
    kw = dict(SMALL, img_size=img_size, num_classes=num_classes)
    kw.update(overrides)
    return timm.create_model(ARCH, pretrained=False, **kw)


def hub_reachable():
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- building


def test_build_by_name_and_callable():
    net = build_backbone(ARCH, num_classes=3, model_kwargs=dict(SMALL, img_size=16))
    assert len(net.blocks) == 2 and net.head.out_features == 3
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 3)

    factory = functools.partial(timm.create_model, ARCH, img_size=16)
    net = build_backbone(factory, num_classes=4, model_kwargs=SMALL)
    assert net.head.out_features == 4 and net.embed_dim == 16


class Tiny(nn.Module):
    """A non-timm model: checkpoints load with the same cleaning and checks."""

    def __init__(self, num_classes=2, width=4):
        super().__init__()
        self.features = nn.Linear(3, width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(model="vit_tiny_patch16_22"), ValueError,
         r"`model`='vit_tiny_patch16_22' is not a timm model.*Did you mean"),
        (dict(model=3), TypeError, r"`model` must be a timm model name or a callable"),
        (dict(model=lambda num_classes: "x"), TypeError, r"callable must return a torch.nn.Module, got str"),
        (dict(model=ARCH, model_kwargs={"num_classes": 3}), ValueError,
         r"`model_kwargs` must not contain 'num_classes'; pass it as build_backbone\(num_classes=...\)"),
        (dict(model=ARCH, num_classes=0), ValueError, r"`num_classes` must be a positive integer, got 0"),
        (dict(model=ARCH, pretrained=True, checkpoint_path="w.pth"), ValueError,
         r"`pretrained=True` and `checkpoint_path` both"),
        (dict(model=Tiny, pretrained=True), ValueError, r"`pretrained=True` needs a timm model name"),
        (dict(model=ARCH, checkpoint_path="/nonexistent/dir/w.safetensors"), FileNotFoundError,
         r"/nonexistent/dir/w.safetensors"),
        (dict(model=ARCH, model_kwargs=dict(img_size=8, patch_size=4, embed_dim=15, depth=1, num_heads=2)),
         ValueError, r"timm cannot build 'vit_tiny_patch16_224' with model_kwargs=\{.*'embed_dim': 15.*"
                     r"divisible by num_heads.*Fix model_kwargs"),
        (dict(model=ARCH, model_kwargs=dict(img_size=8, patch_size=4, embed_dim=16, depth=1, widht=3)),
         ValueError, r"timm cannot build .*unexpected keyword argument 'widht'.*Fix model_kwargs"),
    ],
)
def test_build_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        build_backbone(**kwargs)


def test_missing_checkpoint_fails_before_building():
    calls = []

    def factory(**kw):
        calls.append(kw)
        return Tiny(**kw)

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone(factory, checkpoint_path="missing.pth")
    assert calls == []


# --------------------------------------------------------------------------- pretrained=True


@pytest.mark.skipif(hub_reachable(), reason="the Hugging Face Hub is reachable; this checks the offline failure")
def test_pretrained_without_network_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailableError) as info:
        build_backbone(ARCH, pretrained=True, model_kwargs=dict(SMALL, img_size=16, cache_dir=str(tmp_path)))
    assert time.perf_counter() - start < 15
    text = str(info.value)
    assert "could not download" in text and ARCH in text
    assert "unreachable" in text
    for alternative in ("checkpoint_path=", "pretrained=False", "HF_HUB_OFFLINE"):
        assert alternative in text
    assert isinstance(info.value, RuntimeError)


def test_pretrained_offline_mode_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailableError, match=r"offline mode is on.*not in the local cache"):
        build_backbone(ARCH, pretrained=True, model_kwargs=dict(SMALL, img_size=16, cache_dir=str(tmp_path)))
    assert time.perf_counter() - start < 15


def _fake_hub_cache(cache: Path, state_dict) -> None:
    """Lay out a Hugging Face cache entry for the default weights of ARCH."""
    repo = timm.models.get_pretrained_cfg(ARCH).hf_hub_id
    root = cache / ("models--" + repo.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    (root / "snapshots" / rev).mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(rev)
    save_file(state_dict, str(root / "snapshots" / rev / "model.safetensors"))


@pytest.mark.parametrize("offline_env", [True, False])
def test_pretrained_loads_from_local_hub_cache(monkeypatch, tmp_path, offline_env):
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif hub_reachable():
        pytest.skip("the Hugging Face Hub is reachable; the cache-only fallback is not exercised")
    src = vit(img_size=16, num_classes=1000, seed=1)
    _fake_hub_cache(tmp_path, src.state_dict())
    start = time.perf_counter()
    net = build_backbone(ARCH, pretrained=True, num_classes=2,
                         model_kwargs=dict(SMALL, img_size=32, cache_dir=str(tmp_path)))
    assert time.perf_counter() - start < 15
    assert torch.equal(net.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    assert net.pos_embed.shape == (1, 65, 16)  # resampled from 4x4 to 8x8 patches
    assert net.head.out_features == 2  # the 1000-class head was dropped


# --------------------------------------------------------------------------- checkpoints


def _save(obj, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(obj, str(path))
    else:
        torch.save(obj, str(path))
    return path


@pytest.mark.parametrize(
    "filename, wrap",
    [
        ("w.safetensors", lambda sd: sd),
        ("w.pth", lambda sd: sd),
        ("w.pth", lambda sd: {"state_dict": sd, "epoch": 3, "args": argparse.Namespace(lr=0.1)}),
        ("w.pt", lambda sd: {"model": sd, "optimizer_steps": 10}),
        ("w.bin", lambda sd: {"model_state_dict": {"module." + k: v for k, v in sd.items()}}),
        ("w.safetensors", lambda sd: {"_orig_mod.module." + k: v for k, v in sd.items()}),
        ("w.pth", lambda sd: {"vit." + k: v for k, v in sd.items()}),  # saved from ViTSuffix
    ],
)
def test_checkpoint_formats_and_wrappers(tmp_path, filename, wrap):
    src = vit(num_classes=2, seed=1)
    path = _save(wrap(src.state_dict()), tmp_path / filename)
    net = build_backbone(ARCH, num_classes=2, checkpoint_path=path, model_kwargs=dict(SMALL, img_size=16))
    for name, tensor in src.state_dict().items():
        assert torch.equal(net.state_dict()[name], tensor), name  # head included: same size


def test_checkpoint_with_other_head_and_image_size(tmp_path):
    src = vit(img_size=16, num_classes=10, seed=1)
    path = _save(src.state_dict(), tmp_path / "w.pth")
    torch.manual_seed(5)
    net = build_backbone(ARCH, num_classes=2, checkpoint_path=path, model_kwargs=dict(SMALL, img_size=32))
    assert torch.equal(net.blocks[0].mlp.fc2.weight, src.blocks[0].mlp.fc2.weight)
    assert torch.equal(net.patch_embed.proj.weight, src.patch_embed.proj.weight)
    want = resample_abs_pos_embed(src.pos_embed.detach(), new_size=(8, 8), old_size=(4, 4), num_prefix_tokens=1)
    assert net.pos_embed.shape == (1, 65, 16)
    torch.testing.assert_close(net.pos_embed.detach(), want)
    assert net.head.out_features == 2
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2)


def test_checkpoint_with_other_patch_size(tmp_path):
    src = vit(img_size=16, seed=1)
    path = _save(src.state_dict(), tmp_path / "w.safetensors")
    net = build_backbone(ARCH, checkpoint_path=path, model_kwargs=dict(SMALL, img_size=16, patch_size=2))
    assert net.patch_embed.proj.weight.shape == (16, 3, 2, 2)
    assert net.pos_embed.shape == (1, 65, 16)
    assert torch.equal(net.blocks[1].norm2.weight, src.blocks[1].norm2.weight)
    assert not torch.equal(net.patch_embed.proj.weight, vit(img_size=16, patch_size=2).patch_embed.proj.weight)


def test_checkpoint_to_grey_scale(tmp_path):
    src = vit(seed=1)
    path = _save(src.state_dict(), tmp_path / "w.pth")
    net = build_backbone(ARCH, checkpoint_path=path, model_kwargs=dict(SMALL, img_size=16, in_chans=1))
    torch.testing.assert_close(net.patch_embed.proj.weight, src.patch_embed.proj.weight.sum(1, keepdim=True))


def test_backbone_only_checkpoint_keeps_fresh_head(tmp_path):
    src = vit(seed=1)
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    path = _save(sd, tmp_path / "w.pth")
    net = vit(seed=7)
    head_before = net.head.weight.detach().clone()
    report = load_checkpoint(net, path)
    assert report["missing_head_keys"] == ["head.weight", "head.bias"] and not report["head_loaded"]
    assert torch.equal(net.head.weight, head_before)
    assert torch.equal(net.blocks[0].attn.proj.weight, src.blocks[0].attn.proj.weight)


@pytest.mark.parametrize(
    "src_kwargs, msg",
    [
        (dict(embed_dim=32), r"does not fit the VisionTransformer architecture: \d+ tensors differ in shape, "
                             r"e\.g\. .*checkpoint \(.*32.*\) vs model \(.*16.*\)"),
        (dict(depth=1), r"model tensors are missing from the checkpoint, e\.g\. \['blocks\.1\."),
        (dict(depth=3), r"checkpoint tensors have no place in the model, e\.g\. \['blocks\.2\."),
    ],
)
def test_checkpoint_of_other_architecture(tmp_path, src_kwargs, msg):
    src = vit(**src_kwargs)
    path = _save(src.state_dict(), tmp_path / "w.safetensors")
    net = vit(seed=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=msg):
        load_checkpoint(net, path)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched


class Opaque:
    pass


@pytest.mark.parametrize(
    "payload, msg",
    [
        ({"state_dict": {"a": 1}}, r"contains no tensors"),
        ([torch.zeros(2)], r"holds a list, not a state dict"),
        ({"model": Opaque()}, r"holds Python objects besides tensors \(.*Opaque\)"),
    ],
)
def test_checkpoint_content_errors(tmp_path, payload, msg):
    path = _save(payload, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=msg):
        load_checkpoint(vit(), path)


@pytest.mark.parametrize("filename", ["w.pth", "w.safetensors", "w.bin"])
@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_unreadable_checkpoint_file(tmp_path, filename, content):
    path = tmp_path / filename
    path.write_bytes(content)
    msg = r"`checkpoint_path`=.*could not be read as a (PyTorch checkpoint|safetensors file)"
    with pytest.raises(ValueError, match=msg):
        load_checkpoint(vit(), path)


def test_npz_checkpoint_points_to_timm(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(ValueError, match=r"\.npz archive.*pretrained_cfg_overlay"):
        load_checkpoint(vit(), path)


def test_callable_model_with_checkpoint(tmp_path):
    src = Tiny(num_classes=5)
    path = _save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    net = build_backbone(Tiny, num_classes=2, checkpoint_path=path)
    assert torch.equal(net.features.weight, src.features.weight)
    assert net.head.out_features == 2

    wide = Tiny(width=6)
    path = _save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"features\.weight: checkpoint \(6, 3\) vs model \(4, 3\)"):
        build_backbone(Tiny, checkpoint_path=path)


# --------------------------------------------------------------------------- info helpers


def test_model_input_config():
    cfg = model_input_config(vit(img_size=32, in_chans=1))
    assert cfg["img_size"] == (32, 32) and cfg["in_chans"] == 1
    assert len(cfg["mean"]) == len(cfg["std"]) == 1
    net = vit(img_size=24, patch_size=8)
    cfg = model_input_config(net)
    assert cfg["img_size"] == (24, 24) and cfg["patch_size"] == (8, 8)
    assert cfg["mean"] == tuple(net.pretrained_cfg["mean"]) and cfg["std"] == tuple(net.pretrained_cfg["std"])
    # a model with ImageNet normalisation gets its own values, not the ViT's 0.5s
    deit = timm.create_model("deit_tiny_patch16_224", img_size=16, **SMALL)
    assert model_input_config(deit)["mean"] == tuple(deit.pretrained_cfg["mean"]) != cfg["mean"]
    plain = model_input_config(nn.Linear(2, 2))
    assert plain["in_chans"] == 3 and len(plain["mean"]) == 3


def test_count_parameters():
    net = vit()
    n_total = sum(p.numel() for p in net.parameters())
    assert count_parameters(net) == (n_total, n_total)
    apply_mask(net, MaskSpace.from_model("ln-attn-mlp", net).resolve("linear"))
    assert count_parameters(net) == (net.head.weight.numel() + net.head.bias.numel(), n_total)


# --------------------------------------------------------------------------- forward segments

VARIANTS = {
    "plain": dict(),
    "layer-scale+qk-norm": dict(init_values=0.1, qk_norm=True),
    "registers+avg-pool": dict(reg_tokens=2, global_pool="avg", fc_norm=True),
    "no-embed-class+pre-norm": dict(no_embed_class=True, pre_norm=True, class_token=True),
    "map-pool": dict(global_pool="map"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prefix_then_suffix_equals_full_model(variant):
    net = vit(img_size=16, depth=3, **VARIANTS[variant]).eval()
    assert supports_prefix_cache(net)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = net(x)
        for s in np.arange(0, 2 * len(net.blocks) + 1):  # numpy integers are accepted too
            out = ViTSuffix(net, s)(forward_prefix(net, x, s))
            torch.testing.assert_close(out, full, atol=1e-5, rtol=0, msg=f"start={s}")


def half_of(name: str) -> int | None:
    """Half-block index of a parameter name, or None outside the blocks."""
    parts = name.split(".")
    if parts[0] != "blocks":
        return None
    return 2 * int(parts[1]) + (parts[2] not in ("norm1", "attn", "ls1"))


@pytest.mark.parametrize("start", [1, 2, 3, 5, 6])
def test_gradients_reach_only_the_suffix(start):
    net = vit(img_size=16, depth=3, init_values=0.1)
    net.train()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        cached = forward_prefix(net, x, start)
    suffix = ViTSuffix(net, start)
    suffix(cached.requires_grad_(True)).sum().backward()
    got = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    want = {
        n for n, _ in net.named_parameters()
        if (half_of(n) is not None and half_of(n) >= start) or n.split(".")[0] in ("norm", "fc_norm", "head")
    }
    assert got == want
    assert cached.grad is not None
    assert {n.removeprefix("vit.") for n, _ in suffix.named_parameters()} == {n for n, _ in net.named_parameters()}


@pytest.mark.parametrize("mask", ["linear", "attention", {"mlp": [2]}, {"ln": [1]}, "bitfit"])
def test_frozen_prefix_cache_with_masks(mask):
    """Training from the cache reaches every trainable parameter and matches the full model."""
    net = vit(img_size=16, depth=3).eval()
    m = MaskSpace.from_model("ln-attn-mlp", net).resolve(mask)
    apply_mask(net, m)
    s = frozen_prefix_length(m, model=net)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        cached = forward_prefix(net, x, s)
    out = ViTSuffix(net, s)(cached)
    torch.testing.assert_close(out, net(x), atol=1e-5, rtol=0)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


class CustomForward(VisionTransformer):
    def forward(self, x):
        return super().forward(x) * 2


def test_supports_prefix_cache_rejects_other_models():
    assert not supports_prefix_cache(nn.Linear(2, 2))
    assert not supports_prefix_cache(vit(block_fn=ResPostBlock))
    custom = CustomForward(img_size=16, num_classes=2, **SMALL)
    assert not supports_prefix_cache(custom)
    x = torch.randn(1, 3, 16, 16)
    custom.eval()
    with torch.no_grad():  # start=0 runs any model whole
        torch.testing.assert_close(ViTSuffix(custom, 0)(x), custom(x))


@pytest.mark.parametrize(
    "make, start, exc, msg",
    [
        (lambda: vit(), 5, ValueError, r"`start` must be an integer between 0 and 4 \(2 x 2 blocks\), got 5"),
        (lambda: vit(), -1, ValueError, r"`start` must be an integer between 0 and 4"),
        (lambda: vit(), 1.0, ValueError, r"`start` must be an integer"),
        (lambda: nn.Linear(2, 2), 1, TypeError, r"needs a timm VisionTransformer.*Linear is not one"),
    ],
)
def test_suffix_errors(make, start, exc, msg):
    with pytest.raises(exc, match=msg):
        ViTSuffix(make(), start)


def test_forward_prefix_errors_and_identity():
    net = vit()
    x = torch.randn(1, 3, 16, 16)
    assert forward_prefix(net, x, 0) is x
    with pytest.raises(ValueError, match=r"`stop` must be an integer between 0 and 4"):
        forward_prefix(net, x, 9)
    with pytest.raises(TypeError, match=r"needs a timm VisionTransformer"):
        forward_prefix(vit(block_fn=ResPostBlock), x, 1)


# ----------------------------------------------------------------------------- timm's local-weights route
_OVERLAY_VIT = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_cfg_overlay_file_loads_local_weights(tmp_path, suffix):
    source = timm.create_model("vit_tiny_patch16_224", num_classes=3, **_OVERLAY_VIT)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    started = time.perf_counter()
    net = build_backbone("vit_tiny_patch16_224", pretrained=True, num_classes=2,
                         model_kwargs=dict(_OVERLAY_VIT, pretrained_cfg_overlay=dict(file=str(path))))
    assert time.perf_counter() - started < 20  # the Hub is never probed nor retried
    loaded = net.state_dict()
    for key, value in state.items():
        if not key.startswith("head."):
            torch.testing.assert_close(loaded[key], value, msg=key)
    assert net.head.out_features == 2  # timm drops a head of another size


def test_pretrained_cfg_overlay_file_through_the_classifier(tmp_path):
    from skfairtune import FairTuneClassifier

    source = timm.create_model("vit_tiny_patch16_224", num_classes=2, **_OVERLAY_VIT)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=True, max_epochs=1, batch_size=8, random_state=0,
                             lr=1e-10,  # training moves no weight measurably: what is left is what was loaded
                             model_kwargs=dict(_OVERLAY_VIT, pretrained_cfg_overlay=dict(file=str(path))))
    X = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    clf.fit(X, np.array([0, 1] * 4))
    torch.testing.assert_close(clf.model_.patch_embed.proj.weight, source.patch_embed.proj.weight)
    torch.testing.assert_close(clf.model_.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(pretrained=False), ValueError, r"loaded only with pretrained=True"),
    (dict(pretrained=True, file="missing.pth"), FileNotFoundError, r"\['file'\]`='missing.pth' does not exist"),
])
def test_pretrained_cfg_overlay_file_errors(tmp_path, kwargs, exc, message):
    path = tmp_path / "w.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", **_OVERLAY_VIT).state_dict(), path)
    overlay = dict(file=kwargs.pop("file", str(path)))
    with pytest.raises(exc, match=message):
        build_backbone("vit_tiny_patch16_224", model_kwargs=dict(_OVERLAY_VIT, pretrained_cfg_overlay=overlay),
                       **kwargs)
