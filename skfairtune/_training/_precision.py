"""Which arithmetic a fit uses: the ``precision`` parameter resolved to bf16 autocast or float32.

``precision="auto"`` picks bf16 autocast where the hardware computes in bf16
natively *and* it pays:

- on CUDA, from compute capability 8.0 (Ampere); older GPUs only emulate bf16,
  which is slower than float32 there;
- on a CPU, when it has native bf16 instructions (``avx512_bf16`` or
  ``amx_bf16`` in ``/proc/cpuinfo``) and the model is at least
  :data:`BF16_MIN_WIDTH` wide. Under bf16 autocast on a CPU, timm's attention
  runs its explicit maths instead of the fused kernel (:func:`unfuse_attention`).
  Measured on an AMD EPYC with ``avx512_bf16``, one thread, a
  ``FairTuneClassifier`` fit (full fine-tuning, depth 12, 32 px, patch 4,
  batch 64), ``precision="bf16"`` against ``"32"``: width 32 1.36x, 48 1.56x,
  64 1.77x, 96 1.80x, 192 1.84x; a plain timm step at width 16 0.96x. The
  threshold sits at 64, where the gain is near its full size and bf16's
  held-out answers were measured equal to float32's; narrower models, whose
  gain is smaller and whose bf16 accuracy was not measured, stay in float32
  (see ``docs/benchmarks.md``).

The rule is a fixed one, not a timing probe: a probe on a loaded machine could
answer differently from one fit to the next, and the precision changes the
fitted model, so ``random_state`` would no longer make a fit repeatable.

``precision="32"`` means IEEE float32: :func:`compute_scope` switches TF32 (on
CUDA matmuls and cuDNN convolutions; cuDNN allows it by default) and reduced
float32 matmul precision off for the duration of each training or inference
step, and puts the user's settings back afterwards.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

__all__ = [
    "BF16_MIN_WIDTH",
    "compute_scope",
    "cpu_has_native_bf16",
    "cuda_has_native_bf16",
    "exact_float32",
    "model_width",
    "resolve_precision",
    "unfuse_attention",
]

#: Narrowest model (``embed_dim``) that ``precision="auto"`` trains in bf16 on a CPU.
BF16_MIN_WIDTH = 64

#: CPU flags (Linux ``/proc/cpuinfo``) of native bf16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

#: First CUDA compute capability with bf16 tensor cores (Ampere).
CUDA_BF16_CAPABILITY = (8, 0)


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags, read once per process (empty where there is no ``cpuinfo``)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:  # not Linux: no flags known, so no bf16 claimed
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 dot products in hardware (AVX512-BF16 or AMX).

    Examples
    --------
    >>> isinstance(cpu_has_native_bf16(), bool)
    True
    """
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True when the GPU has bf16 tensor cores (compute capability 8.0 or later)."""
    return tuple(torch.cuda.get_device_capability(device)) >= CUDA_BF16_CAPABILITY


def model_width(model: torch.nn.Module) -> int | None:
    """The model's residual width (timm's ``embed_dim``, else ``num_features``), None when unknown."""
    for name in ("embed_dim", "num_features"):
        value = getattr(model, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def resolve_precision(setting: str, device: torch.device, width: int | None) -> str:
    """The precision a fit uses, ``"bf16"`` or ``"32"``, for the ``precision`` parameter.

    Parameters
    ----------
    setting : {"auto", "32", "bf16"}
        The classifier's ``precision``; ``"32"`` and ``"bf16"`` are kept as they are.
    device : torch.device
        Where the model trains.
    width : int or None
        The model's residual width (:func:`model_width`); None counts as narrow.

    Returns
    -------
    precision : {"bf16", "32"}

    Examples
    --------
    >>> import torch
    >>> resolve_precision("32", torch.device("cpu"), 768)
    '32'
    >>> resolve_precision("auto", torch.device("cpu"), 32)  # float32 on every CPU at this width
    '32'
    """
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "32"
    if device.type == "cpu" and cpu_has_native_bf16() and (width or 0) >= BF16_MIN_WIDTH:
        return "bf16"
    return "32"


def unfuse_attention(model: torch.nn.Module) -> int:
    """Switch timm's attention layers from the fused kernel to their explicit maths.

    For bf16 autocast on a CPU. There torch's fused (flash) attention runs its
    backward pass about 4x slower in bf16 than in float32 (measured on an AMD
    EPYC with ``avx512_bf16``, torch 2.14, one thread, width 192, 64 tokens,
    batch 64: 44 ms against 11 ms per block), which cancels most of what bf16
    gains in the matmuls; the explicit ``softmax(q k^T) v`` is two bf16 matmuls.
    A training step then takes 0.49x the float32 time instead of 0.70x
    (``docs/benchmarks.md``). CUDA keeps the fused kernel, which is fast there.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place: every submodule with a boolean ``fused_attn`` (timm's
        switch, read at each forward) gets ``fused_attn = False``.

    Returns
    -------
    n_layers : int
        How many layers were switched.

    Examples
    --------
    >>> import timm
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=16,
    ...                         depth=2, num_heads=2, num_classes=2)
    >>> unfuse_attention(vit) in (0, 2)  # 0 where timm's config already disables fused attention
    True
    >>> any(getattr(layer, "fused_attn", False) for layer in vit.modules())
    False
    """
    switched = 0
    for layer in model.modules():
        if getattr(layer, "fused_attn", None) is True:
            layer.fused_attn = False
            switched += 1
    return switched


#: The per-backend float32 switches of torch >= 2.9 (``fp32_precision``); "ieee" is exact float32.
_FP32_SWITCHES = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"), ("mkldnn", "matmul"), ("mkldnn", "conv"))


def _fp32_switches() -> list:
    backends = (getattr(getattr(torch.backends, name, None), op, None) for name, op in _FP32_SWITCHES)
    return [switch for switch in backends if switch is not None]


@contextlib.contextmanager
def exact_float32():
    """IEEE float32 inside the block: no TF32 on CUDA, no reduced-precision float32 matmuls anywhere.

    The global switches are put back on exit, so a user's own setting outside a
    fit is kept. torch >= 2.9 refuses to read its legacy switches
    (``allow_tf32``, ``get_float32_matmul_precision``) once the new per-backend
    ``fp32_precision`` ones were set, and the reverse reads fine, so the new
    ones are used where they exist.
    """
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        switches = _fp32_switches()
        saved = [switch.fp32_precision for switch in switches]
        try:
            for switch in switches:
                switch.fp32_precision = "ieee"
            yield
        finally:
            for switch, value in zip(switches, saved):
                switch.fp32_precision = value
        return
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,  # pragma: no cover
             torch.backends.cudnn.allow_tf32)
    try:  # pragma: no cover - torch < 2.9
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        yield
    finally:  # pragma: no cover
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]


def compute_scope(exact: bool):
    """:func:`exact_float32` when ``exact`` (``precision="32"``), else a no-op context."""
    return exact_float32() if exact else contextlib.nullcontext()
