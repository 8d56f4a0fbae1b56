"""Which arithmetic a fit uses: the ``precision`` parameter resolved to bf16 autocast or float32.

``precision="auto"`` picks bf16 autocast where the hardware computes in bf16
natively *and* it pays:

- on CUDA, from compute capability 8.0 (Ampere); older GPUs only emulate bf16,
  which is slower than float32 there;
- on a CPU, when it has native bf16 instructions (``avx512_bf16`` or
  ``amx_bf16`` in ``/proc/cpuinfo``) and the model is at least
  :data:`BF16_MIN_WIDTH` wide. Narrower models spend their step in element-wise
  work and casts, where bf16 saves nothing: measured on an AMD EPYC with
  ``avx512_bf16``, one thread, a depth-12 ViT at 32 px, patch 4, batch 64, one
  training step, bf16 autocast against float32: width 64 0.95-0.98x, 96 1.22x,
  128 1.27x, 192 1.83x (see ``docs/benchmarks.md``).

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
]

#: Narrowest model (``embed_dim``) that ``precision="auto"`` trains in bf16 on a CPU.
BF16_MIN_WIDTH = 96

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
    >>> resolve_precision("auto", torch.device("cpu"), 64)  # too narrow to gain anywhere
    '32'
    """
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "32"
    if device.type == "cpu" and cpu_has_native_bf16() and (width or 0) >= BF16_MIN_WIDTH:
        return "bf16"
    return "32"


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
