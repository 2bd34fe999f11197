"""Model clients, interchangeable behind the ``ModelClient`` protocol.

``make_client(pool)`` picks the implementation by ``pool.kind``: the OpenAI-compatible HTTP
clients (``openai-embeddings``, ``openai-chat``, ``openai-completions``) or the in-process
sentence-transformers model (``builtin``, needs the optional ``model`` dependency group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.models.types import InferenceRequest, InferenceResult, ModelClient

if TYPE_CHECKING:
    from brigade.settings import PoolSettings

__all__ = ["InferenceRequest", "InferenceResult", "ModelClient", "make_client"]


def make_client(pool: PoolSettings) -> ModelClient:
    """Build the client for ``pool``'s endpoint kind.

    Raises ``ConfigError`` for an unknown kind. The caller owns the client and must
    ``await client.aclose()`` (normally in the worker's shutdown).
    """
    from brigade.errors import ConfigError

    if pool.kind == "builtin":
        from workers.models.builtin import BuiltinEmbeddingClient

        return BuiltinEmbeddingClient(model=pool.model)
    from workers.models.openai import OPENAI_CLIENTS

    try:
        client_cls = OPENAI_CLIENTS[pool.kind]
    except KeyError:
        raise ConfigError(f"pools.*.kind: unknown model endpoint kind {pool.kind!r}") from None
    return client_cls.from_pool(pool)
