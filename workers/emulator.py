"""A fault-injecting model emulator. TEST AND BENCHMARK TOOL ONLY: it serves no real model.

It speaks the same OpenAI-compatible API as the built-in server (``POST /v1/embeddings``,
``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, ``/healthz``,
``/metrics``) and answers with deterministic fakes: a 384-dimensional unit vector derived
from a hash of each text, an echo for chat and completions. What it is for is the shape of a
real model service under stress:

* latency = ``batch_latency_ms`` per call + ``item_latency_ms`` per item (a GPU's shape),
  with at most ``gpu_slots`` calls computing at once (the rest queue, as on one device);
* 429 with ``Retry-After`` at ``rate_429``, or whenever more than ``max_concurrency``
  requests are in flight; 5xx at ``rate_5xx``; hangs (longer than any client timeout) at
  ``rate_timeout``; calls slower by ``slow_s`` that still succeed at ``rate_slow``; faults
  drawn from a seeded RNG so runs repeat;
* embeddings responses shuffled (``shuffle``) or with items dropped (``drop_rate``);
* 401 unless the bearer token equals ``api_key`` (when one is set).

Test control: ``GET/POST /_emulator/config`` reads or changes the configuration at run time,
``GET /_emulator/stats`` counts requests, statuses, items, batch sizes and every input it was
sent (``seen``) or answered (``served``), so tests can assert a redelivered job did not reach
the model twice; ``POST /_emulator/reset`` clears the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from email.utils import formatdate
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brigade.errors import ConfigError
from workers.server import (
    BadRequest,
    MetricsMiddleware,
    ServerMetrics,
    bad_request_response,
    embeddings_body,
    error_response,
    json_object,
    models_body,
    parse_embeddings,
)

Fault = Literal["ok", "rate_limited", "server_error", "hang", "slow"]


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves; every option can change at run time via ``/_emulator/config``."""

    model: str = "emulated-minilm"
    dimension: int = 384
    batch_latency_ms: float = 20.0
    item_latency_ms: float = 0.5
    gpu_slots: int = 1
    max_concurrency: int = 0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    retry_after_format: Literal["seconds", "date"] = "seconds"
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    hang_s: float = 30.0
    rate_slow: float = 0.0
    slow_s: float = 2.0
    shuffle: bool = False
    drop_rate: float = 0.0
    seed: int = 0
    record_inputs: bool = True
    api_key: str = ""

    def __post_init__(self) -> None:
        checks = [
            ("dimension", self.dimension >= 1),
            ("batch_latency_ms", self.batch_latency_ms >= 0),
            ("item_latency_ms", self.item_latency_ms >= 0),
            ("gpu_slots", self.gpu_slots >= 1),
            ("max_concurrency", self.max_concurrency >= 0),
            ("retry_after_s", self.retry_after_s >= 0),
            ("retry_after_format", self.retry_after_format in ("seconds", "date")),
            ("hang_s", self.hang_s >= 0),
            ("slow_s", self.slow_s >= 0),
            ("drop_rate", 0 <= self.drop_rate <= 1),
        ]
        for name in ("rate_429", "rate_5xx", "rate_timeout", "rate_slow"):
            checks.append((name, 0 <= getattr(self, name) <= 1))
        checks.append(
            ("rate_429 + rate_5xx + rate_timeout + rate_slow",
             self.rate_429 + self.rate_5xx + self.rate_timeout + self.rate_slow <= 1)
        )
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"emulator option {name} is out of range")

    def updated(self, changes: dict[str, Any]) -> EmulatorConfig:
        """A copy with ``changes`` applied; ``ConfigError`` naming an unknown or bad option."""
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ConfigError(f"unknown emulator option {name!r}")
            _check_type(name, value, getattr(self, name))
        return replace(self, **changes)


def _check_type(name: str, value: object, current: object) -> None:
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"emulator option {name} must be a {type(current).__name__}")


async def _client_gone(request: Request) -> None:
    # Polled, because Starlette only reports a disconnect when asked.
    while True:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


def pseudo_embedding(text: str, dimension: int = 384) -> list[float]:
    """A deterministic unit vector derived from a hash of ``text`` (not a semantic embedding)."""
    raw = array("h")
    raw.frombytes(hashlib.shake_256(text.encode("utf-8")).digest(2 * dimension))
    norm = math.sqrt(sum(float(x) * x for x in raw)) or 1.0
    return [x / norm for x in raw]


@dataclass
class EmulatorStats:
    """What the emulator has been asked and answered since start or the last reset."""

    requests: int = 0
    status: Counter[str] = field(default_factory=Counter)
    items: int = 0
    batches: Counter[int] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "requests": self.requests,
            "status": dict(self.status),
            "items": self.items,
            "batches": {str(k): v for k, v in sorted(self.batches.items())},
            "seen": dict(self.seen),
            "served": dict(self.served),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


class Emulator:
    """Route handlers and mutable state of one emulator app."""

    def __init__(self, config: EmulatorConfig, *, metrics: ServerMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.stats = EmulatorStats()
        self._rng = random.Random(config.seed)
        self._gpu = asyncio.Semaphore(config.gpu_slots)

    # ---- faults and latency --------------------------------------------------------------

    def _fault(self) -> Fault:
        c = self.config
        if c.max_concurrency and self.stats.in_flight > c.max_concurrency:
            return "rate_limited"
        draw = self._rng.random()
        if draw < c.rate_429:
            return "rate_limited"
        if draw < c.rate_429 + c.rate_5xx:
            return "server_error"
        if draw < c.rate_429 + c.rate_5xx + c.rate_timeout:
            return "hang"
        if draw < c.rate_429 + c.rate_5xx + c.rate_timeout + c.rate_slow:
            return "slow"
        return "ok"

    async def _fault_response(self, fault: Fault, request: Request) -> Response:
        c = self.config
        if fault == "rate_limited":
            retry_after = (
                formatdate(time.time() + c.retry_after_s, usegmt=True)
                if c.retry_after_format == "date"
                else f"{c.retry_after_s:g}"
            )
            return error_response(
                "emulated rate limit",
                status=429,
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": retry_after},
            )
        if fault == "server_error":
            return error_response("emulated server error", status=500, kind="server_error")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(c.hang_s):
                await _client_gone(request)
        return error_response("emulated hang ended", status=504, kind="server_error")

    async def _compute(self, items: int) -> None:
        seconds = (self.config.batch_latency_ms + self.config.item_latency_ms * items) / 1000.0
        async with self._gpu:
            started = time.perf_counter()
            await asyncio.sleep(seconds)
            self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(items)
        self.metrics.items.inc(items)
        self.stats.items += items
        self.stats.batches[items] += 1

    async def _serve(self, request: Request, inputs: list[str], answer: Any) -> Response:
        """Common path: count, maybe fail, wait the modelled latency, then answer."""
        if self.config.api_key and request.headers.get("authorization") != f"Bearer {self.config.api_key}":
            self.stats.status["401"] += 1
            return error_response(
                "invalid api key", status=401, kind="authentication_error", code="invalid_api_key"
            )
        self.stats.requests += 1
        if self.config.record_inputs:
            self.stats.seen.update(inputs)
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            fault = self._fault()
            if fault not in ("ok", "slow"):
                response = await self._fault_response(fault, request)
            else:
                if fault == "slow":
                    await asyncio.sleep(self.config.slow_s)
                await self._compute(len(inputs))
                response = JSONResponse(answer())
                if self.config.record_inputs:
                    self.stats.served.update(inputs)
        finally:
            self.stats.in_flight -= 1
        self.stats.status[str(response.status_code)] += 1
        return response

    # ---- OpenAI routes ---------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings`` with hash-derived vectors."""
        try:
            call = parse_embeddings(await json_object(request))
        except BadRequest as exc:
            return bad_request_response(exc)
        return await self._serve(
            request, call.texts, lambda: self._embeddings_answer(call.texts, call.encoding_format)
        )

    def _embeddings_answer(self, texts: list[str], encoding_format: str) -> dict[str, Any]:
        order = [i for i in range(len(texts)) if self._rng.random() >= self.config.drop_rate]
        if self.config.shuffle:
            self._rng.shuffle(order)
        vectors = [pseudo_embedding(t, self.config.dimension) for t in texts]
        tokens = sum(len(t.split()) + 2 for t in texts)
        return embeddings_body(
            vectors, model=self.config.model, tokens=tokens, encoding_format=encoding_format, order=order
        )

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: replies ``echo: <last message>``."""
        try:
            body = await json_object(request)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
                raise BadRequest("'messages' must be a non-empty list of objects", param="messages")
        except BadRequest as exc:
            return bad_request_response(exc)
        last = str(messages[-1].get("content", ""))
        return await self._serve(request, [last], lambda: self._chat_answer(last))

    def _chat_answer(self, last: str) -> dict[str, Any]:
        prompt, completion = len(last.split()) + 4, len(last.split()) + 1
        return {
            "id": "chatcmpl-" + hashlib.sha256(last.encode()).hexdigest()[:16],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo: {last}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``: completes a prompt with ``echo: <prompt>``."""
        try:
            body = await json_object(request)
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise BadRequest("'prompt' must be a string", param="prompt")
        except BadRequest as exc:
            return bad_request_response(exc)
        answer = {
            "object": "text_completion",
            "model": self.config.model,
            "choices": [{"index": 0, "text": f"echo: {prompt}", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt.split()), "total_tokens": 2 * len(prompt.split()) + 1},
        }
        return await self._serve(request, [prompt], lambda: answer)

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        return JSONResponse(models_body([self.config.model]))

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``."""
        return JSONResponse({"status": "ok", "model": self.config.model, "emulator": True})

    # ---- test control ----------------------------------------------------------------------

    async def get_config(self, request: Request) -> Response:
        """``GET /_emulator/config``."""
        return JSONResponse(asdict(self.config))

    async def set_config(self, request: Request) -> Response:
        """``POST /_emulator/config``: apply a partial configuration (re-seeds when ``seed`` given)."""
        try:
            changes = await json_object(request)
            self.config = self.config.updated(changes)
        except BadRequest as exc:
            return bad_request_response(exc)
        except ConfigError as exc:
            return error_response(str(exc), status=400)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        if "gpu_slots" in changes:
            self._gpu = asyncio.Semaphore(self.config.gpu_slots)
        return JSONResponse(asdict(self.config))

    async def get_stats(self, request: Request) -> Response:
        """``GET /_emulator/stats``."""
        return JSONResponse(self.stats.as_json())

    async def reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: clear the counts (in-flight requests keep counting)."""
        self.stats = EmulatorStats(in_flight=self.stats.in_flight)
        return JSONResponse(self.stats.as_json())


def create_emulator_app(config: EmulatorConfig | None = None) -> Starlette:
    """The emulator app (a test/benchmark tool, never a model)."""
    metrics = ServerMetrics()
    emulator = Emulator(config or EmulatorConfig(), metrics=metrics)
    routes = [
        Route("/v1/embeddings", emulator.embeddings, methods=["POST"]),
        Route("/v1/chat/completions", emulator.chat, methods=["POST"]),
        Route("/v1/completions", emulator.completions, methods=["POST"]),
        Route("/v1/models", emulator.models, methods=["GET"]),
        Route("/healthz", emulator.healthz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/_emulator/config", emulator.get_config, methods=["GET"]),
        Route("/_emulator/config", emulator.set_config, methods=["POST"]),
        Route("/_emulator/stats", emulator.get_stats, methods=["GET"]),
        Route("/_emulator/reset", emulator.reset, methods=["POST"]),
    ]
    paths = frozenset(r.path for r in routes)
    return Starlette(routes=routes, middleware=[Middleware(MetricsMiddleware, metrics=metrics, paths=paths)])
