"""``precision``: which arithmetic a fit picks, that it records it, and that float32 means float32."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import timm
import torch
from skorch.callbacks import Callback

from skfairtune._training import _precision
from skfairtune._training._precision import (
    BF16_MIN_WIDTH,
    cpu_flags,
    exact_float32,
    model_width,
    resolve_precision,
    unfuse_attention,
)
from skfairtune.backbone._vit_split import ViTSuffix, forward_prefix
from skfairtune.datasets import make_biased_images

from ..conftest import tiny_classifier

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def hardware(monkeypatch):
    """Pretend CPU flags and a GPU's compute capability (no GPU needed)."""
    def set_hardware(*, native_cpu=False, capability=(9, 0)):
        monkeypatch.setattr(_precision, "cpu_has_native_bf16", lambda: native_cpu)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return set_hardware


@pytest.mark.parametrize("setting, device, width, native_cpu, capability, expected", [
    # CPU: native bf16 and wide enough, else float32.
    ("auto", CPU, 192, True, None, "bf16"),
    ("auto", CPU, BF16_MIN_WIDTH, True, None, "bf16"),
    ("auto", CPU, BF16_MIN_WIDTH - 1, True, None, "32"),
    ("auto", CPU, 64, True, None, "bf16"),      # measured 1.77x with unfused attention
    ("auto", CPU, 32, True, None, "32"),        # the narrowest models stay in float32
    ("auto", CPU, 768, False, None, "32"),      # emulated bf16
    ("auto", CPU, None, True, None, "32"),      # unknown width counts as narrow
    # CUDA: bf16 tensor cores from compute capability 8.0 only.
    ("auto", CUDA, 64, False, (8, 0), "bf16"),
    ("auto", CUDA, 64, False, (9, 0), "bf16"),
    ("auto", CUDA, 768, False, (7, 5), "32"),   # Turing emulates bf16
    ("auto", CUDA, 768, False, (6, 0), "32"),
    # Explicit settings are kept.
    ("32", CPU, 768, True, None, "32"),
    ("32", CUDA, 768, False, (9, 0), "32"),
    ("bf16", CPU, 16, False, None, "bf16"),
    ("bf16", CUDA, 16, False, (7, 0), "bf16"),
])
def test_resolve_precision(hardware, setting, device, width, native_cpu, capability, expected):
    hardware(native_cpu=native_cpu, capability=capability or (0, 0))
    assert resolve_precision(setting, device, width) == expected


@pytest.mark.parametrize("text, expected", [
    ("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse amx_bf16 amx_tile\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse avx512f avx512bw\n", False),   # AVX-512 emulates bf16
    ("processor\t: 0\nFeatures\t: fp asimd bf16\n", False),             # Arm: not the x86 flags
    ("", False),
])
def test_cpu_flags_are_read_from_cpuinfo(tmp_path, text, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert bool(cpu_flags(str(path)) & _precision.NATIVE_BF16_FLAGS) is expected
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("model, expected", [
    (timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=1,
                       num_heads=2, num_classes=2), 32),
    (torch.nn.Linear(3, 2), None),
])
def test_model_width(model, expected):
    assert model_width(model) == expected


def _switches():
    return [switch.fp32_precision for switch in _precision._fp32_switches()]


def test_exact_float32_turns_tf32_off_and_restores_the_users_setting():
    before = _switches()
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        users = _switches()
        with exact_float32():
            assert set(_switches()) == {"ieee"}
        assert _switches() == users
        with pytest.raises(KeyError), exact_float32():
            raise KeyError("an error inside the block restores the switches too")
        assert _switches() == users
    finally:
        for switch, value in zip(_precision._fp32_switches(), before):
            switch.fp32_precision = value


class _Probe(torch.autograd.Function):
    """Identity that records cuBLAS's float32 setting in the forward and the backward pass."""

    seen: ClassVar[list] = []

    @staticmethod
    def forward(ctx, x):
        _Probe.seen.append(("forward", torch.backends.cuda.matmul.fp32_precision))
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _Probe.seen.append(("backward", torch.backends.cuda.matmul.fp32_precision))
        return grad


class _ProbeTheHead(Callback):
    """Puts :class:`_Probe` in front of the head once the module exists."""

    def on_train_begin(self, net, **kwargs):
        net.module_.vit.head.register_forward_pre_hook(lambda module, args: (_Probe.apply(args[0]),))


@pytest.mark.parametrize("precision, inside", [("32", "ieee"), ("auto", "tf32")])
def test_precision_32_keeps_tf32_off_in_forward_and_backward(precision, inside):
    data = make_biased_images(32, image_size=16, random_state=0)
    before = _switches()
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"  # a user who turned TF32 on
        _Probe.seen = []
        tiny_classifier(precision=precision, max_epochs=1, callbacks=[("probe", _ProbeTheHead())]).fit(
            data.images, data.target)
        seen = _Probe.seen
        assert {where for where, _ in seen} == {"forward", "backward"}
        assert {value for _, value in seen} == {inside}
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # the user's setting, back
    finally:
        for switch, value in zip(_precision._fp32_switches(), before):
            switch.fp32_precision = value


@pytest.mark.parametrize("precision, native_cpu, expected, autocast", [
    ("32", True, "32", None),
    ("bf16", False, "bf16", torch.bfloat16),
    ("auto", False, "32", None),
    ("auto", True, "bf16", torch.bfloat16),   # with the width rule lowered to the tiny model's
])
def test_fit_records_the_precision_it_used(hardware, monkeypatch, precision, native_cpu, expected, autocast):
    hardware(native_cpu=native_cpu)
    monkeypatch.setattr(_precision, "BF16_MIN_WIDTH", 16)
    data = make_biased_images(48, image_size=16, random_state=0)
    clf = tiny_classifier(precision=precision, max_epochs=1, frozen_cache=False).fit(data.images, data.target)
    assert clf.precision_ == expected
    assert clf.net_.autocast_dtype == autocast
    proba = clf.predict_proba(data.images[:5])
    assert proba.shape == (5, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    logits = clf.net_.infer(clf._transform_input(data.images[:5]))
    assert logits.dtype == torch.float32  # bf16 autocast inside, float32 out


def test_auto_keeps_float32_for_a_narrow_model_on_a_bf16_cpu(hardware):
    hardware(native_cpu=True)
    data = make_biased_images(48, image_size=16, random_state=0)
    clf = tiny_classifier(max_epochs=1).fit(data.images, data.target)  # width 16 < BF16_MIN_WIDTH
    assert clf.precision_ == "32" and clf.net_.autocast_dtype is None


def test_a_bf16_cached_prefix_is_upcast_on_use():
    """The suffix sees the float32 residual stream an uncached run has, whatever the cache stores."""
    vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=2,
                            num_heads=2, num_classes=2).eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        stored = forward_prefix(vit, images, 2).to(torch.bfloat16)
        seen = []
        handle = vit.blocks[1].norm1.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
        suffix = ViTSuffix(vit, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            from_bf16 = suffix(stored)
            from_float = suffix(stored.float())
        handle.remove()
    assert seen == [torch.float32, torch.float32]
    torch.testing.assert_close(from_bf16, from_float, rtol=0, atol=0)


def _fused_layers(module: torch.nn.Module) -> list[bool]:
    return [layer.fused_attn for layer in module.modules() if isinstance(getattr(layer, "fused_attn", None), bool)]


@pytest.mark.parametrize("precision, fused_after_fit", [("bf16", False), ("32", True)])
def test_bf16_on_a_cpu_trains_with_unfused_attention(monkeypatch, precision, fused_after_fit):
    """The fused kernel's bf16 backward is slow on CPUs; float32 keeps it."""
    monkeypatch.setattr(timm.layers.config, "_USE_FUSED_ATTN", 1)  # as timm's default, whatever the env says
    data = make_biased_images(48, image_size=16, random_state=0)
    clf = tiny_classifier(precision=precision, max_epochs=1, frozen_cache=False).fit(data.images, data.target)
    fused = _fused_layers(clf.net_.module_)
    assert fused and set(fused) == {fused_after_fit}


def test_unfused_attention_computes_what_the_fused_kernel_does():
    vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=2,
                            num_heads=2, num_classes=2).eval()
    for layer in vit.modules():
        if isinstance(getattr(layer, "fused_attn", None), bool):
            layer.fused_attn = True
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        fused = vit(images)
        assert unfuse_attention(vit) == 2
        assert unfuse_attention(vit) == 0  # nothing left to switch
        unfused = vit(images)
    torch.testing.assert_close(unfused, fused, rtol=1e-5, atol=1e-5)
