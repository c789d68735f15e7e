"""The ``rest`` backend: self-hosted model servers over HTTP (see :mod:`.backend`).

Layout: :mod:`.backend` is the backend class, its settings and the sync and async drivers,
which only do I/O ("where to connect"); :mod:`.exchange` is one call across the replicas
without the I/O (budgets, error mapping, failover, stream reading, health probes);
:mod:`.replicas` balances between servers; :mod:`.wire` is what every dialect shares (the
dialect protocol, stream parsers); ``dialect_*`` modules are "how to talk" to one kind of
server: OpenAI-compatible, TGI native, Ollama native.
"""

from .backend import ReplicaHealth, RestBackend, RestSettings

__all__ = ["ReplicaHealth", "RestBackend", "RestSettings"]
