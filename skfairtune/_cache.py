"""Frozen-prefix activations shared by the trials of one search, within a memory bound.

A trial whose mask freezes the first ``s`` half-blocks trains from the residual
stream after half-block ``s``, computed once per fit
(``FairTuneClassifier._frozen_activations``). Trials of one search start from
the same backbone, so that stream depends only on the images, the input
normalisation and the weights of the prefix: trials sharing a frozen prefix can
share it, and a trial with a longer prefix can continue from a shorter cached
one instead of starting from the images.

Entries are keyed by (data key, ``s``, fingerprint of everything the first
``s`` half-blocks compute with); the fingerprint is a hash of the weights, so
a changed backbone can never be served stale activations. The cache holds at
most ``max_bytes``: least recently used entries are evicted first, and an
entry larger than the whole bound is not stored.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from .backbone import _run_half_blocks

__all__ = ["ActivationCache", "prefix_fingerprints", "data_fingerprint"]

# Submodules of a timm block that run in its first / second half (see forward_prefix).
_HALF_MODULES = (("norm1", "attn", "ls1"), ("norm2", "mlp", "ls2"))
# Top-level parts that run after the blocks: not part of any prefix.
_AFTER_BLOCKS = ("blocks.", "norm.", "fc_norm.", "head.", "head_drop.", "attn_pool.")
# Hash at most this many elements of the images: a guard next to the caller's data key.
_DATA_SAMPLE = 1 << 20


def _update(digest, tensor: torch.Tensor) -> None:
    tensor = tensor.detach()
    digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    digest.update(tensor.cpu().contiguous().view(torch.uint8).numpy().tobytes())


def prefix_fingerprints(module, stop: int) -> list[str]:
    """Cumulative fingerprints of the computation up to each half-block.

    Parameters
    ----------
    module : skfairtune._training.ModelInput
        The wrapped ViT (``module.suffix.vit``) with its input ``mean``/``std``.
    stop : int
        Last half-block to cover.

    Returns
    -------
    list of str
        ``stop + 1`` hex digests; entry ``s`` identifies the output of the
        embeddings and the first ``s`` half-blocks.
    """
    vit = module.suffix.vit
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(vit).__module__}.{type(vit).__qualname__}".encode())
    digest.update(repr((getattr(vit, "num_prefix_tokens", None), getattr(vit, "no_embed_class", None),
                        getattr(vit, "dynamic_img_size", None))).encode())
    _update(digest, module.mean)
    _update(digest, module.std)
    for name, tensor in [*vit.named_parameters(), *vit.named_buffers()]:
        if not name.startswith(_AFTER_BLOCKS):
            digest.update(name.encode())
            _update(digest, tensor)
    out = [digest.hexdigest()]
    for half in range(stop):
        block = vit.blocks[half // 2]
        for sub_name in _HALF_MODULES[half % 2]:
            sub = getattr(block, sub_name, None)
            if sub is None:
                continue
            for name, tensor in [*sub.named_parameters(), *sub.named_buffers()]:
                digest.update(f"{half}.{sub_name}.{name}".encode())
                _update(digest, tensor)
        out.append(digest.hexdigest())
    return out


def data_fingerprint(images: torch.Tensor) -> str:
    """Shape, dtype and a sample of evenly spaced images (cheap for any data size).

    Whole images are sampled, not a strided view of the flattened tensor: a
    flat view of a non-contiguous (e.g. memory-mapped, channels-last) tensor
    would copy all of it.
    """
    n_images = images.shape[0]
    per_image = max(1, images[0].numel()) if n_images else 1
    n_rows = max(1, min(n_images, _DATA_SAMPLE // per_image))
    index = torch.linspace(0, max(0, n_images - 1), n_rows).round().long() if n_images else None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tuple(images.shape)}{images.dtype}".encode())
    if index is not None:
        _update(digest, images[index])
    return digest.hexdigest()


class ActivationCache:
    """LRU of frozen-prefix activations, bounded in bytes.

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
    >>> from skfairtune._cache import ActivationCache
    >>> cache = ActivationCache(max_bytes=2**20)
    >>> cache.stats()["max_bytes"]
    1048576
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict = OrderedDict()
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
        self.bytes = 0

    def activations(self, clf, images: torch.Tensor, start: int, *, data_key) -> torch.Tensor:
        """The residual stream after ``start`` half-blocks for ``images``.

        Parameters
        ----------
        clf : FairTuneClassifier
            Prepared for training (``net_`` built), whose first ``start``
            half-blocks are frozen.
        images : torch.Tensor
            The model inputs.
        start : int
            Frozen half-blocks.
        data_key : hashable
            Names the images (e.g. which fold and which side of it).

        Returns
        -------
        torch.Tensor
            On the CPU; treat it as read-only, other trials may share it.
        """
        module = clf.net_.module_
        fingerprints = prefix_fingerprints(module, start)
        data = (data_key, data_fingerprint(images))
        key = (data, start, fingerprints[start])
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        for shorter in range(start - 1, 0, -1):
            base_key = (data, shorter, fingerprints[shorter])
            if base_key in self._entries:
                self._entries.move_to_end(base_key)
                out = self._extend(clf, self._entries[base_key], shorter, start)
                self.partial_hits += 1
                break
        else:
            out = clf._frozen_activations(images, start)
            self.misses += 1
        self._store(key, out)
        return out

    @torch.no_grad()
    def _extend(self, clf, cached: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        """Run half-blocks ``first .. stop - 1`` on stored activations, in eval mode."""
        module = clf.net_.module_
        was_training = module.training
        module.eval()
        batch = clf.predict_batch_size or 2 * clf.batch_size
        chunks = []
        try:
            for i in range(0, len(cached), batch):
                chunk = cached[i:i + batch].to(clf.device_)
                chunks.append(_run_half_blocks(module.suffix.vit, chunk, first, stop).cpu())
        finally:
            module.train(was_training)
        return torch.cat(chunks)

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
    return int(np.floor(float(max_mb) * 2**20))
