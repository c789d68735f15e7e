"""The ``rest`` backend: self-hosted model servers over HTTP (see :mod:`.backend`).

Layout: :mod:`.backend` is the backend class and its settings ("where to connect");
:mod:`.replicas` balances and fails over between servers; :mod:`.wire` is what every
dialect shares (the dialect protocol, stream parsers); ``dialect_*`` modules are "how to
talk" to one kind of server: OpenAI-compatible, TGI native, Ollama native.
"""

from .backend import ReplicaHealth, RestBackend, RestSettings

__all__ = ["ReplicaHealth", "RestBackend", "RestSettings"]
