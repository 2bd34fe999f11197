"""Post-processing steps and pipelines."""

from __future__ import annotations

import math

import pytest

from brigade.errors import ConfigError, Permanent
from brigade.settings import PoolSettings
from workers.postprocess import PostprocessError, build_pipeline, pipeline_for


def test_l2_normalize_then_truncate() -> None:
    pipeline = build_pipeline(["truncate:2", "l2_normalize"])
    out = pipeline.run({"embedding": [3.0, 4.0, 12.0]})
    assert out["embedding"] == pytest.approx([0.6, 0.8])
    assert math.isclose(sum(x * x for x in out["embedding"]), 1.0)


def test_zero_vector_stays_zero() -> None:
    assert build_pipeline(["l2_normalize"]).run({"embedding": [0, 0]})["embedding"] == [0.0, 0.0]


def test_json_extract_from_fenced_and_bare_text() -> None:
    step = build_pipeline(["json_extract"])
    assert step.run({"text": 'Sure!\n```json\n{"a": 1}\n```'})["json"] == {"a": 1}
    assert step.run({"text": 'the answer is [1, 2] ok'})["json"] == [1, 2]
    with pytest.raises(PostprocessError, match="no JSON object"):
        step.run({"text": "nothing here"})


def test_broken_user_step_is_reported_by_name() -> None:
    def explode(arg: str | None) -> object:
        def step(output: dict[str, object]) -> dict[str, object]:
            raise ZeroDivisionError("boom")
        return step

    pipeline = build_pipeline(["mine"], registry={"mine": explode})  # type: ignore[dict-item]
    with pytest.raises(PostprocessError) as info:
        pipeline.run({})
    assert isinstance(info.value, Permanent) and info.value.step == "mine"
    assert "ZeroDivisionError: boom" in str(info.value)


def test_unknown_step_and_bad_argument_fail_at_startup() -> None:
    with pytest.raises(ConfigError, match="'nope' is not registered"):
        build_pipeline(["nope"])
    with pytest.raises(ConfigError, match="positive length"):
        build_pipeline(["truncate:x"])


def test_defaults_per_kind() -> None:
    embed = PoolSettings(model="m", endpoint="http://x")
    chat = PoolSettings(model="m", endpoint="http://x", kind="openai-chat")
    assert pipeline_for(embed).names == ["l2_normalize"]
    assert pipeline_for(chat).names == []
