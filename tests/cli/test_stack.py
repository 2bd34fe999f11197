"""``brigade up`` refuses to start beside another process on its ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from brigade.errors import BrigadeError
from brigade.kafka.local import LocalKafka
from brigade.net import free_port
from brigade.settings import ApiSettings, KafkaSettings, PoolSettings, Settings
from cli.stack import _refuse_taken_ports, child_specs, stack_settings


def _settings(tmp_path: Path, api_port: int) -> Settings:
    return Settings(
        data_dir=tmp_path,
        kafka=KafkaSettings(broker_port=free_port(), controller_port=free_port()),
        api=ApiSettings(port=api_port),
        pools={"default": PoolSettings(model="m", endpoint=f"http://127.0.0.1:{free_port()}")},
    )


def test_a_taken_api_port_is_refused_by_name(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings = _settings(tmp_path, listener.getsockname()[1])
        with pytest.raises(BrigadeError, match=r"api\.port \(127\.0\.0\.1:\d+\)"):
            _refuse_taken_ports(settings, LocalKafka.from_settings(settings), with_model_server=True)


def test_free_ports_pass_and_every_role_is_supervised(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    _refuse_taken_ports(settings, LocalKafka.from_settings(settings), with_model_server=True)
    names = [spec.name for spec in child_specs(settings, with_model_server=True)]
    assert names == ["model", "api", "processors", "workers"]


def test_stack_settings_resolve_local_paths_against_the_stack_directory(tmp_path: Path) -> None:
    (tmp_path / "brigade.toml").write_text('clickhouse_url = "chdb://.brigade/ch"\n'
                                           'object_store_url = "s3://bucket/objects"\n')
    settings = stack_settings(tmp_path)
    assert settings.data_dir == tmp_path / ".brigade"
    assert settings.clickhouse_url == f"chdb://{tmp_path}/.brigade/ch"
    assert settings.object_store_url == "s3://bucket/objects"
