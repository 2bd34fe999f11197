"""Polling with a deadline, settings for child processes, Kafka consumer threads and groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from confluent_kafka import Consumer, KafkaException, Message
from confluent_kafka.admin import AdminClient

from brigade.kafka.clients import make_consumer
from brigade.net import free_port
from brigade.settings import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def poll_until(
    check: Callable[[], T | None], *, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = ""
) -> T:
    """Call ``check`` until it returns something truthy and return that; fail at the deadline.

    Raises:
        AssertionError: ``timeout_s`` passed; the message names ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what or 'condition'} (last: {value!r})"
            )
        time.sleep(interval_s)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process read exactly ``settings`` (plus ``extra``).

    Inherited ``BRIGADE_*`` variables are dropped and no ``brigade.toml`` is read, so only
    ``settings`` speaks; ``PYTHONPATH`` points at this checkout for ``python -m`` children.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIGADE_")}
    env["BRIGADE_CONFIG"] = "/nonexistent/brigade.toml"
    for key, value in json.loads(settings.model_dump_json()).items():
        if value is not None:
            env[f"BRIGADE_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


class ConsumerThread:
    """Reads ``topics`` in a thread under a fresh consumer group; subclasses ``handle`` each message."""

    def __init__(
        self, settings: Settings, topics: Iterable[str], *, name: str = "reader", batch: int = 500
    ) -> None:
        self.consumer: Consumer = make_consumer(settings, f"{name}-{uuid.uuid4().hex[:8]}")
        self.consumer.subscribe(list(topics))
        self._batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start reading (after the subclass has set up what ``handle`` uses)."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self.consumer.consume(self._batch, 0.1):
                if message.error() is None:
                    self.handle(message)
            self.idle()
        self.finish()
        self.consumer.close()

    def handle(self, message: Message) -> None:
        """Take one message (called in the reading thread)."""
        raise NotImplementedError

    def idle(self) -> None:
        """Called in the reading thread after every poll."""

    def finish(self) -> None:
        """Called in the reading thread before the consumer closes."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop reading and close the consumer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)


@dataclass
class RunningStack:
    """A running ``brigade up`` and what a user of it knows."""

    home: Path
    settings: Settings
    url: str
    api_key: str
    tenant_id: str
    emulator_url: str


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``BRIGADE_*`` (a stack directory's ``brigade.toml`` then speaks)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("BRIGADE_")}, **extra}


def http_ok(url: str, *, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(
    process: subprocess.Popen[bytes], *, sig: int = signal.SIGINT, timeout_s: float = 60.0
) -> None:
    """Signal ``process``'s group (started with ``start_new_session``); SIGKILL it after ``timeout_s``."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stack_toml(ports: dict[str, int], *, emulated_model: str, model_server: bool = True,
               api: str = "", emulated: str = "", extra: str = "") -> str:
    """A ``brigade.toml`` for ``brigade up`` on ``ports`` (kafka, controller, api, model, emulator).

    The ``emulated`` pool points at the emulator; the ``default`` pool at the model server when
    ``model_server``. ``api``, ``emulated`` and ``extra`` add lines to those sections and the end.
    """
    default = f"""
[pools.default]
model = "all-MiniLM-L6-v2"
endpoint = "http://127.0.0.1:{ports['model']}"
kind = "openai-embeddings"
""" if model_server else ""
    return f"""
default_pool = "{'default' if model_server else 'emulated'}"
processors_metrics_port = {ports.get('processors_metrics') or free_port()}
workers_metrics_port = {ports.get('workers_metrics') or free_port()}
[kafka]
bootstrap = "127.0.0.1:{ports['kafka']}"
broker_port = {ports['kafka']}
controller_port = {ports['controller']}
[api]
port = {ports['api']}
{api}
{default}
[pools.emulated]
model = "{emulated_model}"
endpoint = "http://127.0.0.1:{ports['emulator']}"
kind = "openai-embeddings"
{emulated}
{extra}
"""


@dataclass(frozen=True)
class GroupMember:
    """One member of a consumer group as the broker describes it."""

    member_id: str
    instance: str | None
    partitions: frozenset[tuple[str, int]]


def describe_group(admin: AdminClient, group: str) -> tuple[str, list[GroupMember]] | None:
    """The group's state name (``STABLE``, ``PREPARING_REBALANCE``, ...) and members, or
    ``None`` while the broker has no coordinator for it."""
    try:
        [description] = [f.result(10) for f in admin.describe_consumer_groups([group]).values()]
    except KafkaException:
        return None
    members = [GroupMember(m.member_id, m.group_instance_id,
                           frozenset((tp.topic, tp.partition) for tp in m.assignment.topic_partitions))
               for m in description.members]
    return description.state.name, members
