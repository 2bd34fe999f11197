"""Secrets on disk: every secret file is created 0600, with no moment under a wider mode.

A file written and then chmod-ed exists for a moment with the umask's mode, and a
descriptor opened then stays readable. The audit hook below sees every ``open`` that
creates a file in the data directory, and a wrapper around ``os.open`` sees the mode each
was created with: every creation must be an ``os.open`` with mode 0600 (a plain
``open()``/``write_text`` shows up in the hook but not in the wrapper).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from brigade.secretfiles import ensure_secret
from brigade.settings import Settings
from ingress.admin import ensure_operator_token
from ingress.tenants import TenantStore, ensure_dev_tenant
from tests.hostile.conftest import Stack

pytestmark = [pytest.mark.hostile]

_WATCHED: list[Path] = []
_CREATES: list[tuple[str, Any]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHED or len(args) < 3:
        return
    path, mode, flags = args[0], args[1], args[2]
    if isinstance(path, (str, Path)) and str(path).startswith(str(_WATCHED[0])) and flags & os.O_CREAT:
        _CREATES.append((str(path), mode))


sys.addaudithook(_hook)


def test_secret_files_are_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    private: set[str] = set()
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and mode == 0o600:
            private.add(str(path))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    old = os.umask(0o022)
    _WATCHED.append(tmp_path)
    try:
        store = TenantStore.from_settings(settings)
        store.add("acme")
        ensure_dev_tenant(settings)
        ensure_secret(settings.path("callback-secret"))
        ensure_operator_token(settings)
    finally:
        _WATCHED.clear()
        os.umask(old)
    assert _CREATES, "no file creation seen"
    assert {path for path, _ in _CREATES} <= private, _CREATES
    for name in ("tenants.json", "dev-credentials.json", "callback-secret", "operator-token"):
        assert stat.S_IMODE(settings.path(name).stat().st_mode) == 0o600, name
    assert not [p for p in settings.data_dir.iterdir() if p.name.startswith(".")], "scratch files left"


def test_the_running_stack_keeps_its_secrets_private(stack: Stack) -> None:
    data = stack.home / ".brigade"
    for name in ("tenants.json", "dev-credentials.json", "callback-secret", "operator-token"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
