"""Model clients, interchangeable behind the ``ModelClient`` protocol.

``make_client(pool)`` picks the implementation by ``pool.kind``: the OpenAI-compatible HTTP
clients (``openai-embeddings``, ``openai-chat``, ``openai-completions``) or the in-process
all-MiniLM-L6-v2 (``builtin``, on the backend that ``builtin_model`` settings name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.models.types import InferenceRequest, InferenceResult, ModelClient

if TYPE_CHECKING:
    from brigade.settings import BuiltinModelSettings, PoolSettings

__all__ = ["InferenceRequest", "InferenceResult", "ModelClient", "make_client"]


def make_client(pool: PoolSettings, *, builtin: BuiltinModelSettings | None = None) -> ModelClient:
    """Build the client for ``pool``'s endpoint kind.

    ``builtin`` picks the backend and threads of a ``builtin`` pool (default: onnx, the
    backend's own thread count). Raises ``ConfigError`` for an unknown kind. The caller owns
    the client and must ``await client.aclose()`` (normally in the worker's shutdown).
    """
    from brigade.errors import ConfigError

    if pool.kind == "builtin":
        from workers.models.builtin import BuiltinEmbeddingClient

        if builtin is None:
            return BuiltinEmbeddingClient(model=pool.model)
        return BuiltinEmbeddingClient(model=pool.model, backend=builtin.backend, threads=builtin.threads)
    from workers.models.openai import OPENAI_CLIENTS

    try:
        client_cls = OPENAI_CLIENTS[pool.kind]
    except KeyError:
        raise ConfigError(f"pools.*.kind: unknown model endpoint kind {pool.kind!r}") from None
    return client_cls.from_pool(pool)
