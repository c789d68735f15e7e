"""Device-dependent choices that decide how fast the ``hf`` backend's generate() runs.

**cuDNN attention is kept out of llmkit's generate() calls on CUDA.** Measured on an H200
(torch 2.11, SmolLM2-135M shape, bf16): ``generate()`` in a freshly started thread ran at
8-14 tokens/s against 35-45 in the application's main thread. ``torch.profiler`` put 65% of
the worker's CPU time in ``aten::_cudnn_attention_forward``: 2.2 ms a call there, 0.06 ms in
the warmed-up main thread. PyTorch's cuDNN SDPA backend builds a cuDNN execution plan per
shape and keeps the plans per thread, and a decoding step has a new key length every time,
so a thread that has not seen those shapes before (llmkit's worker, which exists only while
there is work) pays the plan build on every step; the main thread's numbers were fast only
because repeated runs of the same prompt had filled its cache. The flash and
memory-efficient kernels keep no such cache. SDPA's backend switches are process-wide flags,
so :func:`generation_attention` turns cuDNN attention off only while at least one llmkit
generate() runs (counted across backends, so overlapping calls of two models restore the
flag exactly once) and puts back what it found. ``cudnn_attention=True`` on the backend
keeps cuDNN attention.

**Batch size.** On a GPU one decoding step of 64 rows costs little more than one of 16 (the
step is launch-bound for small models), so concurrent requests are batched up to 64 rows
there; on a CPU every row costs compute and 16 stays the default.

**KV-cache budget.** :func:`kv_bytes_per_token` is what one position of one row costs in
the KV cache (keys and values of every layer); the backend's ``kv_cache_budget`` bounds a
batch's rows times its padded length times that, so a batch takes only the waiting
requests that fit (the others wait for the next one), and a request that cannot fit even
alone is refused with :class:`~llmkit.errors.ContextLengthError` before it is queued.
Activations and the model's weights are not counted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["default_max_batch_size", "generation_attention", "kv_bytes_per_token"]

# Rows per generate() when the backend is given no max_batch_size.
_BATCH_CPU = 16
_BATCH_GPU = 64

_lock = threading.Lock()
_active = 0
_restore = False


def default_max_batch_size(device: str) -> int:
    """The ``max_batch_size`` used when the backend is given none."""
    return _BATCH_GPU if device.startswith("cuda") else _BATCH_CPU


def kv_bytes_per_token(config: Any, dtype: Any) -> int:
    """Bytes of KV cache one position of one row takes (keys and values, every layer)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = getattr(text, "head_dim", None) or (
        int(getattr(text, "hidden_size", 0) or 0) // max(heads, 1)
    )
    size = int(getattr(dtype, "itemsize", 4) or 4)
    return max(1, 2 * layers * kv_heads * int(head_dim) * size)


@contextlib.contextmanager
def generation_attention(device: str, *, allow_cudnn: bool = False) -> Iterator[None]:
    """Run a generate() call with cuDNN attention switched off on CUDA (see the module)."""
    if allow_cudnn or not device.startswith("cuda"):
        yield
        return
    import torch

    global _active, _restore
    with _lock:
        if _active == 0:
            _restore = bool(torch.backends.cuda.cudnn_sdp_enabled())  # type: ignore[no-untyped-call]
            if _restore:
                torch.backends.cuda.enable_cudnn_sdp(False)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _restore:
                torch.backends.cuda.enable_cudnn_sdp(True)
                _restore = False
