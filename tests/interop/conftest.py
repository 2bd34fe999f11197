"""Fixtures of the interop tests: the Java reference tools, and the ingress API fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ingress.conftest import api, start_api, tenant_store
from tests.interop.java_tools import AvroJava, compile_java, resolve_avro_jars

__all__ = ["api", "start_api", "tenant_store"]


@pytest.fixture(scope="session")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Every program in ``java/`` compiled once; with the Avro jars, the classpath to run them."""
    jars = f"{resolve_avro_jars()}/*"
    classes = tmp_path_factory.mktemp("java-classes")
    compile_java(classes, jars, "AvroOracle.java", "HttpPost.java")
    return classes, f"{classes}{os.pathsep}{jars}"


@pytest.fixture(scope="session")
def avro_java(java_classes: tuple[Path, str]) -> AvroJava:
    """Apache Avro's Java implementation, run one batch at a time."""
    return AvroJava(java_classes[1])
