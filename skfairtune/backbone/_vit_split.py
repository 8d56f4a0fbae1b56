"""The frozen prefix: where a model can be cut, running it in pieces, and caching its output.

A mask that freezes everything up to some half-block ``s`` (half-blocks are
defined in :mod:`skfairtune.backbone._half_blocks`) leaves a *frozen prefix* whose output never changes during training. Computing it once
and training only the suffix gives the same model, faster. This module owns
everything about that cut:

- eligibility: :func:`prefix_cut` says how many half-blocks may be served from
  cached activations for a given model, mask and training set-up, and why not
  when none may;
- the split forward pass: :func:`forward_prefix` runs the prefix,
  :class:`ViTSuffix` the rest, for models whose forward can be split this way
  (:func:`~skfairtune.backbone.supports_prefix_cache`, defined with the
  half-blocks: timm ViTs with standard pre-norm blocks; other families run whole);
- :class:`ActivationCache`: prefix outputs shared by the trials of one search.

"Frozen prefix" (a count of half-blocks) is the one name for the cut; it is
``frozen_prefix_`` on a fitted classifier.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
import torch
from torch import nn

from ._half_blocks import HALF_BLOCK_MODULES, n_half_blocks, supports_prefix_cache

__all__ = [
    "ActivationCache",
    "NOTHING_FROZEN",
    "ViTSuffix",
    "check_cut",
    "images_digest",
    "forward_prefix",
    "max_bytes_from_mb",
    "prefix_cut",
    "run_half_blocks",
    "supports_prefix_cache",
]


def check_cut(model: nn.Module, position: int, name: str) -> int:
    """``position`` as an int after checking ``model`` can be cut there."""
    if not supports_prefix_cache(model):
        raise TypeError(
            f"Splitting the forward pass needs a timm VisionTransformer with standard pre-norm blocks; "
            f"{type(model).__name__} is not one (see supports_prefix_cache). Use {name}=0 to run it whole."
        )
    n_half = n_half_blocks(len(model.blocks))
    if isinstance(position, bool) or not isinstance(position, numbers.Integral) or not 0 <= position <= n_half:
        raise ValueError(
            f"`{name}` must be an integer between 0 and {n_half} (2 x {len(model.blocks)} blocks), got {position!r}."
        )
    return int(position)


def run_half_blocks(model: nn.Module, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Half-blocks ``start .. stop - 1`` of ``model`` on the residual stream ``x``.

    A stream stored in a 16-bit float (a frozen-prefix cache built under bf16
    autocast) is upcast to float32 first: the whole model's residual stream is
    float32 under autocast (``pos_embed`` is a float32 parameter, and each
    half-block adds its branch to the stream), so a cached run must train and
    predict on the same stream as an uncached one, not accumulate in bf16.
    """
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    # Mirrors timm 1.0 Block.forward with attn_mask=None, is_causal=False.
    for h in range(start, stop):
        block, half = divmod(h, 2)
        norm, branch, scale, drop = (getattr(model.blocks[block], m) for m in HALF_BLOCK_MODULES[half])
        x = x + drop(scale(branch(norm(x))))
    return x


def forward_prefix(model: nn.Module, images: torch.Tensor, stop: int) -> torch.Tensor:
    """Run a timm ViT up to the end of half-block ``stop``.

    Runs ``patch_embed``, ``_pos_embed``, ``patch_drop`` and ``norm_pre``,
    then the first ``stop`` half-blocks (see
    :mod:`skfairtune.backbone._half_blocks`). ``ViTSuffix(model, stop)``
    continues from the result. With ``stop=0`` the images are returned as
    they are, since ``ViTSuffix(model, 0)`` is the whole model.

    Call it under ``torch.no_grad()`` and in eval mode to build a cache of a
    frozen prefix.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ViT for which :func:`supports_prefix_cache` is True.
    images : torch.Tensor
        Images of shape (N, C, H, W).
    stop : int
        Number of half-blocks to run, between 0 and ``2 * len(model.blocks)``.

    Returns
    -------
    torch.Tensor
        The residual stream of shape (N, tokens, embed_dim), or ``images``
        when ``stop == 0``.

    Examples
    --------
    >>> import timm, torch
    >>> from skfairtune.backbone._vit_split import ViTSuffix, forward_prefix
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
    ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2).eval()
    >>> x = torch.randn(3, 3, 16, 16)
    >>> with torch.no_grad():
    ...     cached = forward_prefix(vit, x, 3)
    ...     same = torch.allclose(ViTSuffix(vit, 3)(cached), vit(x), atol=1e-6)
    >>> tuple(cached.shape), same
    ((3, 17, 16), True)
    """
    stop = check_cut(model, stop, "stop")
    if stop == 0:
        return images
    x = model.patch_embed(images)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    x = model.norm_pre(x)
    return run_half_blocks(model, x, 0, stop)


class ViTSuffix(nn.Module):
    """The part of a timm ViT after its first ``start`` half-blocks.

    Parameters
    ----------
    model : torch.nn.Module
        The whole timm ViT, held as the submodule ``vit`` (its parameter
        names gain the prefix ``vit.``). With ``start > 0`` it must support
        :func:`supports_prefix_cache`.
    start : int
        Number of leading half-blocks that the input has already gone
        through (see :func:`forward_prefix`); 0 means the input is images
        and the whole model runs.

    Attributes
    ----------
    vit : torch.nn.Module
        The wrapped model.
    start : int
        Where the suffix begins.

    Examples
    --------
    >>> import timm, torch
    >>> from skfairtune.backbone._vit_split import ViTSuffix
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
    ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
    >>> head_only = ViTSuffix(vit, 4)  # linear readout: input is the last residual stream
    >>> head_only(torch.randn(5, 17, 16)).shape
    torch.Size([5, 2])
    """

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        if isinstance(start, bool) or not isinstance(start, numbers.Integral):
            raise ValueError(f"`start` must be an integer, got {start!r}.")
        self.vit = model
        self.start = check_cut(model, start, "start") if start != 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.start == 0:
            return self.vit(x)
        m = self.vit
        x = run_half_blocks(m, x, self.start, n_half_blocks(len(m.blocks)))
        x = m.norm(x)
        return m.forward_head(x)

    def extra_repr(self) -> str:
        return f"start={self.start}"


# --------------------------------------------------------------------------- #
# Eligibility
# --------------------------------------------------------------------------- #

#: Why no cache when the mask trains the first block: no reason to warn about.
NOTHING_FROZEN = "nothing at the input side of the model is frozen"


def token_shape(backbone: nn.Module) -> tuple[int, int]:
    """(tokens, width) of a ViT's residual stream."""
    tokens = backbone.patch_embed.num_patches + getattr(backbone, "num_prefix_tokens", 1)
    return tokens, backbone.embed_dim


def has_stochastic_layers(backbone: nn.Module, frozen_prefix: int) -> bool:
    """True when any dropout or drop-path before the cut is active in training."""
    n_blocks = math.ceil(frozen_prefix / 2)
    modules = [backbone.patch_embed, getattr(backbone, "patch_drop", None), getattr(backbone, "pos_drop", None)]
    modules += list(backbone.blocks[:n_blocks])
    for part in modules:
        if part is None:
            continue
        for sub in part.modules():
            # Dropout has `p`, timm's DropPath `drop_prob`, PatchDropout `prob`.
            if isinstance(sub, torch.nn.Dropout) and sub.p > 0:
                return True
            if any(isinstance(getattr(sub, name, None), float) and getattr(sub, name) > 0
                   for name in ("drop_prob", "prob")):
                return True
    return False


def prefix_cut(backbone: nn.Module, frozen_half_blocks: int, *, setting, augments: str | None,
               n_samples: int, max_mb: float, bytes_per_value: int = 4) -> tuple[int, str | None]:
    """How many half-blocks to serve from cached activations, and why none when 0.

    Parameters
    ----------
    backbone : torch.nn.Module
        The masked model.
    frozen_half_blocks : int
        Leading half-blocks the mask freezes (:func:`skfairtune.masks.frozen_prefix_length`).
    setting : {"auto", True, False}
        The classifier's ``frozen_cache``.
    augments : str or None
        Why the frozen part's input changes every epoch (augmentation), if it does.
    n_samples : int
        Training images, to size the cache.
    max_mb : float
        The classifier's ``frozen_cache_max_mb``.
    bytes_per_value : int, default=4
        Size of one stored activation (2 when stored in bf16).

    Returns
    -------
    frozen_prefix : int
        0 when the model runs whole.
    reason : str or None
        Why the cache is off (None when it is on, or switched off by the user).
    """
    if setting is False:
        return 0, None
    if not supports_prefix_cache(backbone):
        return 0, (f"{type(backbone).__name__}'s forward pass cannot be split at a block "
                   "(the cache needs a timm VisionTransformer with standard pre-norm blocks)")
    if frozen_half_blocks == 0:
        return 0, NOTHING_FROZEN
    if augments:
        return 0, augments
    if has_stochastic_layers(backbone, frozen_half_blocks):
        return 0, "the frozen part has dropout or stochastic depth"
    tokens, width = token_shape(backbone)
    needed_mb = n_samples * tokens * width * bytes_per_value / 2**20
    if needed_mb > max_mb:
        return 0, f"the cache would take {needed_mb:.0f} MiB, over frozen_cache_max_mb={max_mb}"
    return int(frozen_half_blocks), None


# --------------------------------------------------------------------------- #
# Cache shared across trials
# --------------------------------------------------------------------------- #

# Hash at most this many elements of the images: a guard next to the caller's data key.
_DATA_SAMPLE = 1 << 20


def images_digest(images: torch.Tensor) -> str:
    """Shape, dtype and a sample of evenly spaced images (cheap for any data size).

    Whole images are sampled, not a strided view of the flattened tensor: a
    flat view of a non-contiguous (e.g. memory-mapped, channels-last) tensor
    would copy all of it.
    """
    n_images = images.shape[0]
    per_image = max(1, images[0].numel()) if n_images else 1
    n_rows = max(1, min(n_images, _DATA_SAMPLE // per_image))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tuple(images.shape)}{images.dtype}".encode())
    if n_images:
        index = torch.linspace(0, n_images - 1, n_rows).round().long()
        sample = images[index].detach().cpu().contiguous()
        digest.update(sample.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ActivationCache:
    """LRU of frozen-prefix activations, bounded in bytes.

    Trials of one search copy the same template model (see
    :class:`skfairtune._training._template.ModelTemplate`), so the output of a frozen
    prefix depends only on the images, the template and the cut: entries are
    keyed by (data key, data fingerprint, template key, cut). A trial with a
    longer prefix continues from a shorter stored one instead of starting from
    the images. Least recently used entries are evicted first; an entry larger
    than the whole bound is not stored.

    Parameters
    ----------
    max_bytes : int
        Upper bound on the bytes of all stored activations together.

    Attributes
    ----------
    hits, partial_hits, misses : int
        Requests served as stored, by continuing a shorter stored prefix, or
        from the images.
    evictions, rejected : int
        Entries dropped to stay under the bound, and results too large to store.
    bytes, peak_bytes : int
        Bytes stored now and at most so far (never above ``max_bytes``).

    Examples
    --------
    >>> import torch
    >>> from skfairtune.backbone._vit_split import ActivationCache
    >>> cache = ActivationCache(max_bytes=2**20)
    >>> run = lambda x, first, stop: x + (stop - first)   # stands in for half-blocks
    >>> images = torch.zeros(4, 3)
    >>> cache.activations(images, 2, data_key="train", model_key="m", run=run)[0, 0].item()
    2.0
    >>> cache.activations(images, 3, data_key="train", model_key="m", run=run)[0, 0].item()
    3.0
    >>> cache.stats()["misses"], cache.stats()["partial_hits"]
    (1, 1)
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict = OrderedDict()
        self._on_device: dict = {}
        self.hits = self.partial_hits = self.misses = self.evictions = self.rejected = 0
        self.bytes = self.peak_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict:
        """Counters and sizes, JSON-friendly (the search stores them on each trial)."""
        return {"hits": self.hits, "partial_hits": self.partial_hits, "misses": self.misses,
                "evictions": self.evictions, "rejected": self.rejected, "entries": len(self._entries),
                "bytes": self.bytes, "peak_bytes": self.peak_bytes, "max_bytes": self.max_bytes}

    def clear(self) -> None:
        self._entries.clear()
        self._on_device.clear()
        self.bytes = 0

    def on_device(self, tensors: tuple, key: Hashable, *, move: Callable[[tuple], tuple]) -> tuple:
        """``move(tensors)`` (placing them on a GPU), done once per ``key`` and data, not once per trial.

        Every trial of a search holds the same folds: their images (or cached
        activations) and labels are uploaded by the first trial and reused by
        the next ones while the data under ``key`` is the same. Copies that
        ``move`` left where they were (they did not fit) are not kept. These
        copies live in device memory and are not counted in ``max_bytes``.
        """
        digest = tuple(images_digest(t) for t in tensors)
        stored = self._on_device.get(key)
        if stored is not None and stored[0] == digest:
            return stored[1]
        moved = tuple(move(tuple(tensors)))
        if any(new is not old for new, old in zip(moved, tensors)):
            self._on_device[key] = (digest, moved)
        return moved

    def activations(self, images: torch.Tensor, frozen_prefix: int, *, data_key: Hashable,
                    model_key: Hashable, run: Callable[[torch.Tensor, int, int], torch.Tensor]) -> torch.Tensor:
        """The residual stream after ``frozen_prefix`` half-blocks for ``images``.

        Parameters
        ----------
        images : torch.Tensor
            The model inputs.
        frozen_prefix : int
            Frozen half-blocks.
        data_key : hashable
            Names the images (e.g. which fold and which side of it).
        model_key : hashable
            Names the weights and input normalisation of the prefix (the template).
        run : callable
            ``run(x, first, stop)`` runs half-blocks ``first .. stop - 1``
            (``first == 0``: ``x`` are images).

        Returns
        -------
        torch.Tensor
            On the CPU; treat it as read-only, other trials may share it.
        """
        data = (data_key, images_digest(images), model_key)
        key = (data, frozen_prefix)
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        for shorter in range(frozen_prefix - 1, 0, -1):
            if (data, shorter) in self._entries:
                self._entries.move_to_end((data, shorter))
                out = run(self._entries[(data, shorter)], shorter, frozen_prefix)
                self.partial_hits += 1
                break
        else:
            out = run(images, 0, frozen_prefix)
            self.misses += 1
        self._store(key, out)
        return out

    def _store(self, key, tensor: torch.Tensor) -> None:
        size = tensor.element_size() * tensor.nelement()
        if size > self.max_bytes:
            self.rejected += 1
            return
        while self._entries and self.bytes + size > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.element_size() * old.nelement()
            self.evictions += 1
        self._entries[key] = tensor
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)


def max_bytes_from_mb(max_mb: float) -> int:
    """``frozen_cache_max_mb`` as bytes."""
    return int(np.floor(float(max_mb) * 2**20))
