"""Creating timm models, and timm's pretrained weights from the Hugging Face Hub.

``pretrained=True`` must fail within seconds when the Hub cannot be reached:
huggingface_hub would otherwise retry for about a minute before it looks in
its local cache. :func:`create_pretrained` probes the Hub first and, when it
is unreachable, reads the local cache only.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from contextlib import contextmanager

from torch import nn

try:
    from huggingface_hub import constants as hf_constants
except ImportError:  # timm then cannot use the hub either
    hf_constants = None

__all__ = ["PretrainedWeightsUnavailableError", "create_pretrained", "short_error", "timm_create"]

_PROBE_TIMEOUT_S = 3.0


class PretrainedWeightsUnavailableError(RuntimeError):
    """Raised when ``pretrained=True`` cannot obtain the weights (e.g. no network)."""


def short_error(exc: BaseException, max_len: int = 200) -> str:
    """``exc`` as one line for an error message: its type and the first line of its text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


_OFFLINE_LOCK = threading.Lock()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_requested() -> bool:
    """Offline mode as set now, not only when huggingface_hub was imported."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    return hf_constants is not None and bool(hf_constants.HF_HUB_OFFLINE)


def _hub_endpoint() -> str:
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        endpoint = hf_constants.ENDPOINT if hf_constants is not None else "https://huggingface.co"
    return endpoint


def _probe(url: str, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """Try a TCP connection to ``url`` (or its proxy); return why it failed, or None."""
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_url.hostname, proxy_url.port or 80
    if not host:
        return f"cannot parse endpoint {url!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc})"


@contextmanager
def _hf_offline(enabled: bool):
    """Make huggingface_hub answer from its local cache only, without retries.

    huggingface_hub reads HF_HUB_OFFLINE once at import and otherwise retries
    an unreachable hub for about a minute before falling back to its cache.
    """
    if not enabled or hf_constants is None:
        yield
        return
    with _OFFLINE_LOCK:
        old = hf_constants.HF_HUB_OFFLINE
        hf_constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            hf_constants.HF_HUB_OFFLINE = old


def _is_download_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a network / hub / missing-file failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return True
        for cls in type(exc).__mro__:
            mod = cls.__module__ or ""
            if mod.startswith(("huggingface_hub", "httpx", "httpcore", "requests", "urllib3")):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def timm_create(name: str, pretrained: bool, timm_kwargs: dict) -> nn.Module:
    """``timm.create_model``, with timm's bare asserts on architecture arguments as ValueError."""
    import timm  # deferred: importing timm takes seconds

    try:
        return timm.create_model(name, pretrained=pretrained, **timm_kwargs)
    except (AssertionError, TypeError) as exc:
        # timm checks architecture arguments with bare asserts (e.g. embed_dim % num_heads) and
        # passes unknown keywords to the class; both surface far from the user's call otherwise.
        given = {k: v for k, v in timm_kwargs.items() if k != "num_classes"}
        raise ValueError(
            f"timm cannot build {name!r} with model_kwargs={given!r}: {exc or type(exc).__name__}. "
            "Fix model_kwargs, e.g. embed_dim divisible by num_heads and img_size by patch_size, "
            "and only arguments the model's class accepts."
        ) from exc


def create_pretrained(model: str, timm_kwargs: dict) -> nn.Module:
    """``timm_create`` with pretrained weights; fails within seconds when they cannot be had."""
    offline = _offline_requested()
    why_offline = "Hugging Face offline mode is on (HF_HUB_OFFLINE)" if offline else None
    if not offline:
        endpoint = _hub_endpoint()
        failure = _probe(endpoint)
        if failure is not None:
            offline, why_offline = True, f"the Hugging Face Hub at {endpoint} is unreachable ({failure})"
    try:
        with _hf_offline(offline):
            return timm_create(model, True, timm_kwargs)
    except Exception as exc:
        if not _is_download_error(exc):
            raise
        if offline:
            reason = (
                f"{why_offline}, and they are not in the local cache ({type(exc).__name__})"
            )
        else:
            cause = _root_cause(exc)
            reason = f"the download failed: {short_error(exc, 160)}"
            if cause is not exc:
                reason += f" (caused by {short_error(cause, 120)})"
        raise PretrainedWeightsUnavailableError(
            f"pretrained=True could not download the pretrained weights of {model!r}: {reason}. "
            f"Alternatives: pass checkpoint_path='path/to/weights.safetensors' (or .pth) with local weights; "
            f"use pretrained=False for a random initialisation; or place the weights in the local Hugging Face "
            f"cache (HF_HOME / HF_HUB_CACHE, or model_kwargs={{'cache_dir': ...}}) and set HF_HUB_OFFLINE=1."
        ) from exc
