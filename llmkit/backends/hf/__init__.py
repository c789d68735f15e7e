"""The ``hf`` backend: transformers models running in this process (see :mod:`.backend`).

Layout: :mod:`.backend` is the backend class; :mod:`.loading` resolves and loads a model
(aliases, folders, hub cache, GGUF); :mod:`.generation` runs ``generate()`` for a batch of
rows; :mod:`.batching` schedules concurrent calls into batches; :mod:`.structured` and
:mod:`.tools` constrain decoding for JSON schemas and tool calls; :mod:`.runtime` holds the
device-dependent speed choices (cuDNN attention off while generating on CUDA, batch size,
KV-cache cost) and :mod:`.compiled` the static-cache path of ``compile=True``.
"""

from .backend import HuggingFaceBackend, HuggingFaceSettings

__all__ = ["HuggingFaceBackend", "HuggingFaceSettings"]
