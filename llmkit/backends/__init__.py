"""Backend adapters. Each module holds one backend class; :mod:`llmkit.registry` finds them."""

from .base import Backend, BaseBackend, Capabilities

__all__ = ["Backend", "BaseBackend", "Capabilities"]
