"""Post-processing: a per-pool pipeline of small steps applied to each model output.

A step is a function ``output -> output`` over the JSON-ready dict a model client returns
(``{"embedding": [...]}``, ``{"text": ...}``). Steps are named in ``PoolSettings.postprocess``
as ``name`` or ``name:arg`` and resolved once at start-up, so a typo fails the worker at
boot instead of failing every job. Built-in steps: ``l2_normalize``, ``truncate:N`` and
``json_extract``; others come from the ``brigade.postprocess`` entry point group, whose
objects are step factories ``(arg: str | None) -> Step``.

A step that raises never kills the worker: ``Pipeline.run`` wraps the error in
``PostprocessError`` naming the step, and the executor fails that job permanently with
that message. Skipping the step instead would hand the client a result silently different
from what the pool promises (an unnormalised embedding looks valid), so we fail loudly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from brigade.errors import ConfigError, Permanent
from brigade.settings import PoolSettings

Output = dict[str, Any]
Step = Callable[[Output], Output]
StepFactory = Callable[[str | None], Step]
ENTRY_POINT_GROUP = "brigade.postprocess"


class PostprocessError(Permanent):
    """A post-processing step failed on one job's output."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"post-processing step {step!r} failed: {type(cause).__name__}: {cause}")
        self.step = step


def l2_normalize(arg: str | None = None) -> Step:
    """Scale ``embedding`` to unit length (a zero vector stays zero)."""

    def step(output: Output) -> Output:
        vector = [float(x) for x in output["embedding"]]
        norm = math.sqrt(sum(x * x for x in vector))
        scaled = [x / norm for x in vector] if norm > 0 else vector
        return {**output, "embedding": scaled}

    return step


def truncate(arg: str | None) -> Step:
    """Keep the first N dimensions of ``embedding`` or the first N characters of ``text``."""
    if arg is None or not arg.isdigit() or int(arg) < 1:
        raise ConfigError(f"truncate needs a positive length, as in 'truncate:256' (got {arg!r})")
    limit = int(arg)

    def step(output: Output) -> Output:
        if "embedding" in output:
            return {**output, "embedding": list(output["embedding"])[:limit]}
        if "text" in output:
            return {**output, "text": str(output["text"])[:limit]}
        raise ValueError("output has neither 'embedding' nor 'text'")

    return step


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def json_extract(arg: str | None = None) -> Step:
    """Parse the JSON value in a chat/completion ``text`` (fenced or bare) into ``json``."""

    def step(output: Output) -> Output:
        text = str(output["text"])
        fenced = _FENCE.search(text)
        candidate = fenced.group(1) if fenced else text
        return {**output, "json": _first_json_value(candidate)}

    return step


def _first_json_value(text: str) -> Any:
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, index)
            except ValueError:
                continue
            return value
    raise ValueError("no JSON object or array in the model output")


BUILTIN_STEPS: dict[str, StepFactory] = {
    "l2_normalize": l2_normalize,
    "truncate": truncate,
    "json_extract": json_extract,
}


@dataclass(frozen=True)
class Pipeline:
    """Named steps run in order on each output."""

    steps: tuple[tuple[str, Step], ...] = ()

    def run(self, output: Output) -> Output:
        """Apply every step; raise ``PostprocessError`` naming the first step that fails."""
        for name, step in self.steps:
            try:
                output = step(output)
            except Exception as exc:
                raise PostprocessError(name, exc) from exc
        return output

    @property
    def names(self) -> list[str]:
        """The configured step specs, in order."""
        return [name for name, _ in self.steps]


def registered_steps() -> dict[str, StepFactory]:
    """Built-in steps plus those installed under the ``brigade.postprocess`` group."""
    steps = dict(BUILTIN_STEPS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        steps[ep.name] = ep.load()
    return steps


def build_pipeline(specs: Iterable[str], registry: Mapping[str, StepFactory] | None = None) -> Pipeline:
    """Resolve ``name[:arg]`` specs into a pipeline; unknown names raise ``ConfigError``."""
    registry = registered_steps() if registry is None else registry
    steps = []
    for spec in specs:
        name, _, arg = spec.partition(":")
        factory = registry.get(name)
        if factory is None:
            known = ", ".join(sorted(registry))
            raise ConfigError(f"postprocess step {name!r} is not registered (known: {known})")
        steps.append((spec, factory(arg or None)))
    return Pipeline(tuple(steps))


def default_steps(pool: PoolSettings) -> list[str]:
    """The pool's configured steps, or the default for its kind."""
    if pool.postprocess is not None:
        return list(pool.postprocess)
    return ["l2_normalize"] if pool.kind in ("builtin", "openai-embeddings") else []


def pipeline_for(pool: PoolSettings, registry: Mapping[str, StepFactory] | None = None) -> Pipeline:
    """The pool's pipeline, validated at start-up."""
    return build_pipeline(default_steps(pool), registry)
