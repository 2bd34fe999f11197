"""Settings reject bad configuration at start-up with a sentence naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from brigade.settings import PoolSettings, Settings


def _pool(**extra: object) -> PoolSettings:
    return PoolSettings(model="m", endpoint="http://127.0.0.1:1", **extra)  # type: ignore[arg-type]


def test_defaults_have_a_default_pool_for_the_builtin_model() -> None:
    settings = Settings()
    assert settings.default_pool == "default"
    assert settings.pools["default"].model == "all-MiniLM-L6-v2"
    assert settings.topic("job-events") == "brigade.job-events"


def test_unknown_fallback_pool_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"pools.a.fallback names unknown pool 'nope'"):
        Settings(pools={"a": _pool(fallback="nope")}, default_pool="a")


def test_route_to_unknown_pool_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"routes\[0\].pool names unknown pool 'x'"):
        Settings(routes=[{"pool": "x"}])


def test_pool_names_must_be_topic_safe() -> None:
    with pytest.raises(ValidationError, match=r"pools\.a b"):
        Settings(pools={"a b": _pool()}, default_pool=None)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValidationError, match="no_such_setting"):
        Settings(no_such_setting=1)  # type: ignore[call-arg]


def test_environment_and_toml_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "brigade.toml"
    config.write_text('clickhouse_url = "http://ch:8123"\n[kafka]\nbootstrap = "file:1"\n')
    monkeypatch.setenv("BRIGADE_CONFIG", str(config))
    monkeypatch.setenv("BRIGADE_KAFKA__BOOTSTRAP", "env:2")
    settings = Settings()
    assert settings.clickhouse_url == "http://ch:8123"
    assert settings.kafka.bootstrap == "env:2"
