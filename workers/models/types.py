"""What a model client offers: requests, results and the ``ModelClient`` protocol.

No runtime imports beyond ``typing`` and ``dataclasses``, so every part of the worker can
depend on these names without pulling HTTP or torch in.

Error contract of :meth:`ModelClient.infer` (errors are ``brigade.errors`` classes):

* Per-item failures are *returned* in the item's slot as a ``ModelError`` instance
  (``Transient`` for an item the service silently dropped, ``Permanent`` for an item the
  client could not encode, any class for a chat/completions request that failed on its own).
* Whole-batch failures are *raised*: when one HTTP call carries the whole batch
  (``/v1/embeddings``) and it fails, ``infer`` raises ``RateLimited`` (429, with
  ``retry_after`` seconds or ``None``), ``Transient`` (408, 5xx, timeouts, connection errors,
  undecodable responses) or ``Permanent`` (other 4xx). Fan-out clients (chat, completions)
  never raise for a single request's failure; they return it in that request's slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from brigade.errors import ModelError


@dataclass(frozen=True)
class InferenceRequest:
    """One job's input to a model.

    ``input`` is the parsed JSON of ``JobSpec.input``: a ``str`` for embeddings,
    ``{"messages": [...]}`` (plus optional OpenAI parameters) for chat, ``{"prompt": ...}``
    for completions.
    """

    job_id: str
    input: Any = field(hash=False)
    model: str


@dataclass(frozen=True)
class InferenceResult:
    """One job's model output.

    ``output`` is JSON-ready: ``{"embedding": [floats]}`` for embeddings,
    ``{"text": ..., "message": {...}, "finish_reason": ...}`` for chat,
    ``{"text": ..., "finish_reason": ...}`` for completions. ``tokens`` is the service's
    token count attributed to this item (0 when unknown).
    """

    job_id: str
    output: dict[str, Any] = field(hash=False)
    model: str
    tokens: int = 0


class Embedder(Protocol):
    """A loaded embedding model, synchronous; call from one thread at a time.

    Implemented by the built-in model's backends (``workers.models.onnx_backend``,
    ``workers.models.torch_backend``) and served by ``workers.server``.
    """

    name: str
    backend: str
    dimension: int
    max_seq_length: int
    vocab_size: int

    def encode(self, texts: Sequence[str]) -> tuple[list[list[float]], list[int]]:
        """L2-normalised vectors of ``texts`` and each text's token count after truncation."""
        ...

    def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """The texts that the model's tokenizer turns into ``token_ids`` (special tokens dropped)."""
        ...


@runtime_checkable
class ModelClient(Protocol):
    """A model endpoint the worker calls with a batch of requests."""

    async def infer(self, batch: Sequence[InferenceRequest]) -> list[InferenceResult | ModelError]:
        """Run ``batch``; return one entry per request, in the same order.

        Raises ``RateLimited``/``Transient``/``Permanent`` when the whole batch failed (see
        the module docstring for which failures are raised and which returned).
        """
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the client is unusable afterwards."""
        ...
