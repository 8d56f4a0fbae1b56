"""Fused multi-trial training: K masked copies of one ViT trained in lockstep.

The members share the architecture and the pretrained weights and differ in
which parameters they train (their mask) and their learning rate. A parameter
that no member trains is held once and shared; a parameter that some member
trains is stacked, shape ``(K, ...)``, and every linear layer runs as one
batched matmul over the members. The input batch and the frozen prefix (the
half-blocks no member trains) are computed once for the group. Each member
keeps its own AdamW state, warm-up + cosine learning-rate schedule, epoch count
and seeded batch order, so a member trained fused follows the same trajectory
(to float rounding) as the same trial trained alone with
``torch.optim.AdamW``, ``CrossEntropyLoss`` and the library's ``EpochSeed`` /
``WarmupCosineLR``. Members can leave (:meth:`FusedTrainer.remove`, e.g. when
pruned) and join (:meth:`FusedTrainer.add`) between epochs.

Fusion saves per-operator overhead and the shared prefix; it costs the weight
gradients of members that freeze a parameter another member trains. Whether it
wins depends on the model and the hardware, hence :func:`choose_group_size`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skfairtune.backbone import forward_prefix, supports_prefix_cache

__all__ = ["FusedTrainer", "choose_group_size", "trainable_names"]

_EMBEDDING_PREFIXES = ("patch_embed.", "pos_embed", "cls_token", "reg_token")
_HALF_MODULES = (("norm1", "attn", "ls1"), ("norm2", "mlp", "ls2"))


def trainable_names(template: torch.nn.Module, mask: Any, **apply_kwargs) -> frozenset[str]:
    """Parameter names ``mask`` trains on ``template`` (head included), flags left as found.

    Parameters
    ----------
    template : torch.nn.Module
        A timm ViT.
    mask : Mask or iterable of str
        A :class:`skfairtune.masks.Mask` (resolved with :func:`~skfairtune.masks.apply_mask`
        and ``apply_kwargs``) or the trainable parameter names themselves.
    **apply_kwargs
        Passed to :func:`~skfairtune.masks.apply_mask` (``train_embeddings=...``).

    Returns
    -------
    frozenset of str
    """
    from skfairtune.masks import Mask, apply_mask

    if isinstance(mask, Mask):
        flags = {n: p.requires_grad for n, p in template.named_parameters()}
        try:
            return frozenset(apply_mask(template, mask, **apply_kwargs)["trainable_names"])
        finally:
            for n, p in template.named_parameters():
                p.requires_grad_(flags[n])
    if isinstance(mask, str) or not isinstance(mask, Iterable):
        raise TypeError(f"`mask` must be a Mask or an iterable of parameter names, got {type(mask).__name__}.")
    names = frozenset(mask)
    known = {n for n, _ in template.named_parameters()}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"`mask` names parameters the model does not have: {unknown[:5]}; "
                         "pass names from template.named_parameters().")
    return names


def _lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The factor of ``skfairtune._training._net.WarmupCosineLR`` (same formula, no skorch)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_template(template: torch.nn.Module) -> None:
    """Refuse models whose forward :func:`_forward` would not reproduce."""
    import timm.layers
    from timm.models.vision_transformer import VisionTransformer

    problems = []
    if not isinstance(template, VisionTransformer) or not supports_prefix_cache(template):
        problems.append("it is not a timm VisionTransformer")
    else:
        if template.reg_token is not None or template.no_embed_class or template.cls_token is None:
            problems.append("it has register tokens or no class token")
        if template.global_pool != "token" or template.attn_pool is not None:
            problems.append(f"it pools with {template.global_pool!r} (needs 'token')")
        if getattr(template, "dynamic_img_size", False):
            problems.append("it has dynamic_img_size=True")
        if not isinstance(template.fc_norm, torch.nn.Identity) or not isinstance(template.norm_pre, torch.nn.Identity):
            problems.append("it has fc_norm or norm_pre")
        for module in template.modules():
            rate = getattr(module, "p", 0.0) or getattr(module, "drop_prob", 0.0)
            if isinstance(module, (torch.nn.Dropout, timm.layers.DropPath)) and rate:
                problems.append("it has dropout or stochastic depth")
                break
        for block in template.blocks:
            attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
            if (type(attn).__name__ != "Attention" or not isinstance(attn.q_norm, torch.nn.Identity)
                    or not isinstance(attn.norm, torch.nn.Identity) or getattr(attn, "gate", None) is not None
                    or type(mlp).__name__ != "Mlp" or not isinstance(mlp.act, torch.nn.GELU)
                    or not isinstance(mlp.norm, torch.nn.Identity)):
                problems.append("its blocks are not plain timm Attention + Mlp(GELU) blocks")
                break
    if problems:
        raise ValueError(f"`template` cannot be trained fused: {'; '.join(problems)}. "
                         "Train its trials one at a time (FairTuneClassifier).")


# --------------------------------------------------------------------------- batched ops
# Activations are (B, ...) while every member's is the same and (K, B, ...) once they
# differ; a parameter is its shared tensor or a (K, ...) stack. Each op broadcasts.
def _member_view(param: torch.Tensor, stacked: bool, ndim: int) -> torch.Tensor:
    """A stacked (K, D) parameter as (K, 1, ..., D) against an activation of ``ndim`` dims."""
    if not stacked:
        return param
    return param.view(param.shape[0], *([1] * (ndim - param.dim())), *param.shape[1:])


class _Params:
    """Name -> (tensor, stacked) for one forward."""

    def __init__(self, shared: dict[str, torch.Tensor], stacked: dict[str, torch.Tensor]):
        self.shared, self.stacked = shared, stacked

    def get(self, name: str) -> tuple[torch.Tensor, bool]:
        if name in self.stacked:
            return self.stacked[name], True
        return self.shared[name], False


def _linear(x: torch.Tensor, shared_x: bool, P: _Params, prefix: str) -> tuple[torch.Tensor, bool]:
    w, w_st = P.get(prefix + ".weight")
    b, b_st = P.get(prefix + ".bias")
    shared_out = shared_x and not w_st and not b_st
    if not w_st:
        out = F.linear(x, w, None if b_st else b)
        if b_st:
            out = out + _member_view(b, True, out.dim() + (1 if shared_x else 0))
        return out, shared_out
    lead = x.shape[:-1] if shared_x else x.shape[1:-1]
    if shared_x:
        # One (B*T, D) operand for every member: matmul broadcasts it without a copy.
        out = torch.matmul(x.reshape(1, -1, x.shape[-1]), w.transpose(1, 2))
        out = out + (b.unsqueeze(1) if b_st else b)
    else:
        # The bias inside the GEMM: a separate broadcast add costs about as much on CPU.
        bias = b.unsqueeze(1) if b_st else b
        out = torch.baddbmm(bias, x.reshape(x.shape[0], -1, x.shape[-1]), w.transpose(1, 2))
    return out.view(w.shape[0], *lead, w.shape[1]), shared_out


def _layer_norm(x: torch.Tensor, shared_x: bool, P: _Params, prefix: str, eps: float):
    w, w_st = P.get(prefix + ".weight")
    b, b_st = P.get(prefix + ".bias")
    if not (w_st or b_st):
        return F.layer_norm(x, (x.shape[-1],), w, b, eps), shared_x
    ndim = x.dim() + (1 if shared_x else 0)
    y = F.layer_norm(x, (x.shape[-1],), None, None, eps)
    return y * _member_view(w, w_st, ndim) + _member_view(b, b_st, ndim), False


def _scale(x: torch.Tensor, shared_x: bool, P: _Params, name: str):
    if name not in P.stacked and name not in P.shared:
        return x, shared_x
    g, st = P.get(name)
    return x * _member_view(g, st, x.dim() + (1 if shared_x and st else 0)), shared_x and not st


def _attention(x, shared_x, P, prefix, num_heads):
    qkv, shared = _linear(x, shared_x, P, prefix + ".qkv")
    *lead, T, three_d = qkv.shape
    head_dim = three_d // (3 * num_heads)
    q, k, v = qkv.reshape(-1, T, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(*lead, T, num_heads * head_dim)
    return _linear(out, shared, P, prefix + ".proj")


def _half_block(x, shared_x, P, template, half: int):
    i, second = divmod(half, 2)
    block = template.blocks[i]
    pre = f"blocks.{i}."
    if not second:
        h, sh = _layer_norm(x, shared_x, P, pre + "norm1", block.norm1.eps)
        h, sh = _attention(h, sh, P, pre + "attn", block.attn.num_heads)
        h, sh = _scale(h, sh, P, pre + "ls1.gamma")
    else:
        h, sh = _layer_norm(x, shared_x, P, pre + "norm2", block.norm2.eps)
        h, sh = _linear(h, sh, P, pre + "mlp.fc1")
        h = F.gelu(h, approximate=block.mlp.act.approximate)
        h, sh = _linear(h, sh, P, pre + "mlp.fc2")
        h, sh = _scale(h, sh, P, pre + "ls2.gamma")
    if shared_x and not sh:
        x = x.unsqueeze(0)
    return x + h, shared_x and sh


def _embed(images, shared_in: bool, P: _Params, template):
    """patch_embed (a non-overlapping patch matmul), class token and position embedding."""
    w, w_st = P.get("patch_embed.proj.weight")
    b, b_st = P.get("patch_embed.proj.bias")
    if shared_in and not (w_st or b_st):
        x = template.patch_embed.proj._conv_forward(images, w, b).flatten(2).transpose(1, 2)
        shared = True
    else:
        patch = template.patch_embed.proj.kernel_size
        lead = images.shape[:-3]
        cols = F.unfold(images.reshape(-1, *images.shape[-3:]), patch, stride=patch).transpose(1, 2)
        cols = cols.reshape(*lead, *cols.shape[1:])  # (..., B, L, C * p * p)
        if w_st:
            x = torch.matmul(cols.unsqueeze(0) if shared_in else cols, w.flatten(2).transpose(1, 2).unsqueeze(1))
        else:
            x = F.linear(cols, w.flatten(1))
        x = x + _member_view(b, b_st, x.dim() + (1 if shared_in and not w_st else 0))
        shared = shared_in and not (w_st or b_st)
    cls, c_st = P.get("cls_token")
    pos, p_st = P.get("pos_embed")
    if shared and not (c_st or p_st):
        return torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1) + pos, True
    if shared:
        x = x.unsqueeze(0)
    k = max(x.shape[0], cls.shape[0] if c_st else 1, pos.shape[0] if p_st else 1)
    x = x.expand(k, *x.shape[1:])
    cls = cls.expand(k, x.shape[1], 1, x.shape[-1])  # (1, 1, D) and (K, 1, 1, D) alike
    return torch.cat([cls, x], dim=2) + pos, False  # pos: (1, T, D) or (K, 1, T, D)


def _forward(x, shared: bool, start: int, P: _Params, template, n_members: int) -> torch.Tensor:
    """Logits (K, B, classes) of every member; ``x`` is the input of half-block ``start``.

    ``shared``: ``x`` is one (B, ...) batch for every member rather than (K, B, ...).
    """
    if start == 0:
        x, shared = _embed(x, shared, P, template)
    for half in range(start, 2 * len(template.blocks)):
        x, shared = _half_block(x, shared, P, template, half)
    x, shared = _layer_norm(x, shared, P, "norm", template.norm.eps)
    logits, shared = _linear(x[..., 0, :], shared, P, "head")
    return logits.expand(n_members, *logits.shape) if shared else logits


# --------------------------------------------------------------------------- members
@dataclass
class _Member:
    names: frozenset[str]
    lr: float
    seed: int
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # trained ones only
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0
    epochs: int = 0
    n_trainable: int = 0


def _prefix_length(names: frozenset[str], depth: int) -> int:
    """Leading half-blocks (embeddings first) with no parameter in ``names``."""
    if any(n.startswith(_EMBEDDING_PREFIXES) for n in names):
        return 0
    for half in range(2 * depth):
        i, second = divmod(half, 2)
        if any(n.startswith(f"blocks.{i}.{m}.") for n in names for m in _HALF_MODULES[second]):
            return half
    return 2 * depth


class FusedTrainer:
    """Train several masked copies of one timm ViT in lockstep, one batched step for all.

    Every member starts from ``template``'s weights, trains the parameters of its
    mask (the head always) with its own AdamW state and learning rate on the same
    training set, and sees the batch order a lone trial with the same ``seed``
    would see (``torch.manual_seed(seed * 100_003 + epoch)`` then ``randperm``,
    as ``skfairtune._training._net.EpochSeed`` and ``TensorBatchLoader`` do).

    Parameters
    ----------
    template : torch.nn.Module
        A timm ``VisionTransformer`` with its weights loaded (class token, token
        pooling, no dropout). It is read, never changed.
    X : torch.Tensor of shape (n_samples, C, H, W)
        Training images as float, already normalised for the model.
    y : torch.Tensor or array of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``.
    max_epochs : int
        Epochs of the learning-rate schedule (its cosine reaches zero there).
    batch_size : int, default=64
    weight_decay : float, default=0.05
        AdamW's decoupled weight decay, on trained parameters only.
    warmup_fraction : float, default=1/3
        Share of the schedule's steps spent in linear warm-up.
    class_weights : array-like of shape (n_classes,), default=None
        Weights of ``CrossEntropyLoss`` (a weighted mean per batch).
    betas : tuple of float, default=(0.9, 0.999)
    eps : float, default=1e-8
    prefix_cache : bool, default=True
        Run the half-blocks no member trains once over ``X`` and train from their output.

    Attributes
    ----------
    members : tuple of int
        Ids of the current members, in the order of :meth:`add`.
    train_loss : dict
        Member id -> list of mean training losses, one per epoch.

    Examples
    --------
    >>> import timm, torch
    >>> from _fused import FusedTrainer
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4,
    ...                         embed_dim=16, depth=2, num_heads=2, num_classes=2)
    >>> X, y = torch.randn(20, 3, 16, 16), torch.arange(20) % 2
    >>> trainer = FusedTrainer(vit, X, y, max_epochs=2, batch_size=8)
    >>> a = trainer.add(["blocks.1.attn.qkv.weight"], lr=1e-3, seed=0)
    >>> b = trainer.add([], lr=1e-2, seed=1)   # linear readout: the head only
    >>> trainer.step(2)
    >>> trainer.n_trainable_params(b), trainer.epochs_done(a)
    (34, 2)
    >>> trainer.predict_proba(X[:3])[a].shape
    (3, 2)
    """

    def __init__(self, template: torch.nn.Module, X: torch.Tensor, y, *, max_epochs: int,
                 batch_size: int = 64, weight_decay: float = 0.05, warmup_fraction: float = 1 / 3,
                 class_weights=None, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 prefix_cache: bool = True):
        _check_template(template)
        if not isinstance(X, torch.Tensor) or X.dim() != 4 or not X.is_floating_point():
            raise ValueError(f"`X` must be a float tensor of shape (n_samples, C, H, W), got "
                             f"{type(X).__name__} {tuple(getattr(X, 'shape', ()))}; normalise the images first.")
        y = y.detach().cpu().long() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y), dtype=torch.long)
        if y.shape != (len(X),):
            raise ValueError(f"`y` must hold one label per image ({len(X)}), got shape {tuple(y.shape)}.")
        n_classes = template.head.out_features
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(f"`y` must hold labels in [0, {n_classes}) for the template's head.")
        for name, value, low in (("max_epochs", max_epochs, 1), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        self.template = template
        self.device = next(template.parameters()).device
        self.base = {n: p.detach() for n, p in template.named_parameters()}
        self.X, self.y = X, y
        self.max_epochs, self.batch_size = int(max_epochs), int(batch_size)
        self.weight_decay, self.betas, self.eps = float(weight_decay), betas, float(eps)
        self.class_weights = None if class_weights is None else \
            torch.as_tensor(np.asarray(class_weights), dtype=torch.float32, device=self.device)
        self.steps_per_epoch = math.ceil(len(X) / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.max_epochs
        self.warmup_steps = round(warmup_fraction * self.total_steps)
        self.prefix_cache = prefix_cache
        self._members: dict[int, _Member] = {}
        self._next_id = 0
        self._group = None
        self._cache: tuple[int, torch.Tensor] | None = None
        self.train_loss: dict[int, list[float]] = {}

    # ------------------------------------------------------------------ membership
    @property
    def members(self) -> tuple[int, ...]:
        return tuple(self._members)

    def add(self, mask: Any, lr: float, *, seed: int = 0) -> int:
        """Add a member training ``mask`` (plus the head) at peak learning rate ``lr``.

        Parameters
        ----------
        mask : Mask or iterable of str
            See :func:`trainable_names`.
        lr : float
            Peak learning rate of the warm-up + cosine schedule.
        seed : int, default=0
            Seeds the member's batch order.

        Returns
        -------
        int
            The member's id.
        """
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.number)) or not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"`lr` must be a positive finite number, got {lr!r}.")
        names = trainable_names(self.template, mask) | {n for n in self.base if fnmatchcase(n, "head.*")}
        self._write_back()
        member = _Member(frozenset(names), float(lr), int(seed))
        for n in sorted(names):
            member.params[n] = self.base[n].clone()
            member.exp_avg[n] = torch.zeros_like(self.base[n])
            member.exp_avg_sq[n] = torch.zeros_like(self.base[n])
        member.n_trainable = sum(self.base[n].numel() for n in names)
        ident = self._next_id
        self._next_id += 1
        self._members[ident] = member
        self.train_loss[ident] = []
        return ident

    def remove(self, member: int) -> None:
        """Drop ``member`` (e.g. pruned) from the group; the others train on unchanged."""
        self._check_member(member)
        self._write_back()
        del self._members[member]

    def n_trainable_params(self, member: int) -> int:
        """Number of scalar parameters ``member`` trains."""
        return self._check_member(member).n_trainable

    def epochs_done(self, member: int) -> int:
        """Epochs ``member`` has trained."""
        return self._check_member(member).epochs

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """The template's state dict with ``member``'s trained parameters, for a timm ViT."""
        self._check_member(member)
        self._write_back()
        state = {k: v.detach().clone() for k, v in self.template.state_dict().items()}
        state.update({n: p.clone() for n, p in self._members[member].params.items()})
        return state

    def _check_member(self, member: int) -> _Member:
        if member not in self._members:
            raise KeyError(f"`member` {member!r} is not in the group; current members: {list(self._members)}.")
        return self._members[member]

    # ------------------------------------------------------------------ stacking
    def _stack(self):
        """The group's stacked tensors, built when membership changed."""
        if self._group is not None:
            return self._group
        ids = list(self._members)
        members = [self._members[i] for i in ids]
        names = sorted(set().union(*(m.names for m in members)), key=list(self.base).index)
        stacked, m1, m2, train = {}, {}, {}, {}
        for n in names:
            stacked[n] = torch.stack([m.params.get(n, self.base[n]) for m in members]).requires_grad_(True)
            zeros = torch.zeros_like(self.base[n])
            m1[n] = torch.stack([m.exp_avg.get(n, zeros) for m in members])
            m2[n] = torch.stack([m.exp_avg_sq.get(n, zeros) for m in members])
            train[n] = torch.tensor([float(n in m.names) for m in members], device=self.device)
        shared = {n: t for n, t in self.base.items() if n not in stacked}
        self._group = {"ids": ids, "P": _Params(shared, stacked), "m1": m1, "m2": m2, "train": train}
        return self._group

    def _write_back(self) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        for k, ident in enumerate(group["ids"]):
            if ident not in self._members:
                continue
            member = self._members[ident]
            for n in member.names:
                member.params[n] = group["P"].stacked[n][k].detach().clone()
                member.exp_avg[n] = group["m1"][n][k].clone()
                member.exp_avg_sq[n] = group["m2"][n][k].clone()

    def _inputs(self) -> tuple[int, torch.Tensor]:
        """(start half-block, training inputs there), the shared frozen prefix cached."""
        depth = len(self.template.blocks)
        start = min(_prefix_length(m.names, depth) for m in self._members.values())
        if not self.prefix_cache or start == 0:
            return 0, self.X
        if self._cache is None or self._cache[0] != start:
            with torch.no_grad():
                chunks = [forward_prefix(self.template, self.X[i:i + 256].to(self.device), start)
                          for i in range(0, len(self.X), 256)]
            self._cache = (start, torch.cat(chunks))
        return self._cache

    # ------------------------------------------------------------------ training
    def step(self, n_epochs: int = 1) -> None:
        """Train every member ``n_epochs`` more epochs."""
        if not self._members:
            raise RuntimeError("the group has no members; add some with FusedTrainer.add(mask, lr).")
        for _ in range(int(n_epochs)):
            late = [i for i, m in self._members.items() if m.epochs >= self.max_epochs]
            if late:
                raise RuntimeError(f"members {late} already trained max_epochs={self.max_epochs} epochs; "
                                   "remove them before stepping the group.")
            self._run_epoch()

    def _epoch_orders(self, members) -> torch.Tensor:
        n = len(self.X)
        orders = []
        for m in members:
            g = torch.Generator().manual_seed(m.seed * 100_003 + m.epochs + 1)
            orders.append(torch.randperm(n, generator=g))
        return torch.stack(orders)

    def _run_epoch(self, max_batches: int | None = None) -> None:
        group = self._stack()
        ids = group["ids"]
        members = [self._members[i] for i in ids]
        start, data = self._inputs()
        orders = self._epoch_orders(members)
        # Members with the same seed and epoch share one gathered batch.
        shared = bool((orders == orders[0]).all())
        leaves = list(group["P"].stacked.values())
        totals = torch.zeros(len(ids), dtype=torch.float64)
        n_seen = 0
        for b, first in enumerate(range(0, len(self.X), self.batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            index = orders[0, first:first + self.batch_size] if shared else orders[:, first:first + self.batch_size]
            xb = data[index].to(self.device, non_blocking=True)
            yb = self.y[index].to(self.device, non_blocking=True)
            logits = _forward(xb, shared, start, group["P"], self.template, len(ids))
            K, B, C = logits.shape
            targets = yb.expand(K, B) if shared else yb
            losses = F.cross_entropy(logits.reshape(K * B, C), targets.reshape(-1), weight=self.class_weights,
                                     reduction="none").view(K, B)
            if self.class_weights is None:
                per_member = losses.mean(1)
            else:
                per_member = losses.sum(1) / self.class_weights[targets].sum(1)
            grads = torch.autograd.grad(per_member.sum(), leaves)
            self._adamw(group, members, grads)
            totals += per_member.detach().double().cpu() * B
            n_seen += B
        if max_batches is None:
            for ident, m, total in zip(ids, members, totals.tolist()):
                m.epochs += 1
                self.train_loss[ident].append(total / n_seen)

    @torch.no_grad()
    def _adamw(self, group, members, grads) -> None:
        """One AdamW step per member (torch.optim.AdamW's arithmetic), frozen rows left exact."""
        beta1, beta2 = self.betas
        steps = [m.steps + 1 for m in members]
        factor = torch.tensor([m.lr * _lr_factor(m.steps, self.total_steps, self.warmup_steps) for m in members],
                              dtype=torch.float32, device=self.device)
        bc1 = torch.tensor([1 - beta1 ** s for s in steps], dtype=torch.float32, device=self.device)
        bc2_sqrt = torch.tensor([(1 - beta2 ** s) ** 0.5 for s in steps], dtype=torch.float32, device=self.device)
        for (name, p), g in zip(group["P"].stacked.items(), grads):
            view = (-1,) + (1,) * (p.dim() - 1)
            train = group["train"][name]
            lr = (factor * train).view(view)
            g = g * train.view(view)
            m1, m2 = group["m1"][name], group["m2"][name]
            p.mul_(1 - lr * self.weight_decay)
            m1.lerp_(g, 1 - beta1)
            m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (m2.sqrt() / bc2_sqrt.view(view)).add_(self.eps)
            p.sub_(m1 / denom * (lr / bc1.view(view)))
        for m in members:
            m.steps += 1

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_proba(self, X: torch.Tensor, *, batch_size: int | None = None) -> dict[int, np.ndarray]:
        """Class probabilities of every member on images ``X`` (normalised like the training set).

        Returns
        -------
        dict
            Member id -> array of shape (n_samples, n_classes).
        """
        if not self._members:
            raise RuntimeError("the group has no members; add some with FusedTrainer.add(mask, lr).")
        group = self._stack()
        batch = batch_size or 2 * self.batch_size
        out = [torch.softmax(_forward(X[i:i + batch].to(self.device), True, 0, group["P"], self.template,
                                      len(group["ids"])), dim=-1).cpu()
               for i in range(0, len(X), batch)]
        probs = torch.cat(out, dim=1).numpy()
        return {ident: probs[k] for k, ident in enumerate(group["ids"])}


def choose_group_size(template: torch.nn.Module, X: torch.Tensor, y, masks: Sequence[Any],
                      lrs: Sequence[float], *, candidates: Sequence[int] = (1, 2, 4, 8), n_batches: int = 3,
                      min_gain: float = 1.1, stop_above: float = 1.05,
                      **trainer_kwargs) -> tuple[int, dict[int, float]]:
    """Pick how many trials to train fused from a short timed probe.

    For each ``K`` in ``candidates`` a group of the first ``K`` masks (cycled when
    there are fewer) trains one warm-up batch and then ``n_batches`` timed batches.
    Timed by wall clock on a GPU and by this process's CPU time on CPU (robust to
    other processes sharing the machine). The K with the most trial-batches per second wins, unless it beats K=1 by
    less than ``min_gain`` (then 1: train trials one at a time). Candidates are
    tried in increasing order and the probe stops at the first K whose cost per
    trial is over ``stop_above`` times the best so far.

    Parameters
    ----------
    template, X, y, **trainer_kwargs
        As for :class:`FusedTrainer` (``max_epochs`` defaults to 1 here).
    masks : sequence of Mask or of name sets
        Representative masks (e.g. the first trials').
    lrs : sequence of float
        Their learning rates.
    candidates : sequence of int, default=(1, 2, 4, 8)
    n_batches : int, default=3
    min_gain : float, default=1.1
    stop_above : float, default=1.05

    Returns
    -------
    k : int
    seconds_per_trial_batch : dict
        ``K`` -> measured seconds per batch per trial, for the K probed.
    """
    if not masks or len(masks) != len(lrs):
        raise ValueError(f"`masks` and `lrs` must be non-empty and of equal length, got {len(masks)} and {len(lrs)}.")
    trainer_kwargs.setdefault("max_epochs", 1)
    # On CPU this process's CPU time: other processes' load then cannot pick K (it
    # counts every intra-op thread, so it also measures how well larger ops parallelise).
    on_gpu = next(template.parameters()).device.type == "cuda"
    clock = time.perf_counter if on_gpu else time.process_time
    timings: dict[int, float] = {}
    for k in sorted(set(int(c) for c in candidates)):
        trainer = FusedTrainer(template, X, y, **trainer_kwargs)
        for j in range(k):
            trainer.add(masks[j % len(masks)], lrs[j % len(lrs)], seed=j)
        trainer._run_epoch(max_batches=1)
        started = clock()
        trainer._run_epoch(max_batches=n_batches)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        batches = min(n_batches, trainer.steps_per_epoch)
        timings[k] = (clock() - started) / (batches * k)
        if k > 1 and timings[k] > stop_above * min(timings.values()):
            break  # per-trial cost rising with K: larger groups would only cost probe time
    best = min(timings, key=timings.get)
    if 1 in timings and timings[1] / timings[best] < min_gain:
        best = 1
    return best, timings
