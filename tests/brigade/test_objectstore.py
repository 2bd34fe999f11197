"""The object store on ``file://``: atomic writes, reads, and a missing object named as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from brigade.objectstore import ObjectStoreError, read_bytes, write_bytes


def test_writes_are_whole_and_leave_no_scratch_files(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/results/a/job.json"
    write_bytes(url, b"first")
    write_bytes(url, b"second, longer")
    assert read_bytes(url) == b"second, longer"
    assert [p.name for p in (tmp_path / "results" / "a").iterdir()] == ["job.json"]


def test_a_missing_object_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(ObjectStoreError) as missing:
        read_bytes(f"file://{tmp_path}/nope.json")
    assert missing.value.missing
