"""Java reference implementations for the interop tests: Apache Avro and java.net.http.

The Avro jars are resolved from Maven Central once (``pom.xml`` beside this file) and cached
under ``~/.cache/brigade``, as the broker's jars are; the small Java programs in ``java/`` are
compiled once per test session. Each program takes a whole batch per run: one JVM start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brigade.kafka.local import resolve_jars

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
AVRO_VERSION = "1.12.2"  # as in pom.xml
SCHEMA_DIR = HERE.parents[1] / "schemas" / "avro"
_JAVA_TIMEOUT_S = 240  # one JVM start and a batch, on a loaded machine


def avro_jar_dir() -> Path:
    """Where the resolved Avro jars are kept between runs (shared by every checkout)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "brigade" / f"avro-{AVRO_VERSION}" / "libs"


def resolve_avro_jars() -> Path:
    """Resolve Apache Avro Java and its dependencies with Maven once; return their folder."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"the interop tests need {tool!r} (Java 17 and Maven)")
    return resolve_jars(pom=POM, target=avro_jar_dir())


def compile_java(classes: Path, classpath: str, *sources: str) -> None:
    """Compile ``java/<source>`` files into ``classes``."""
    classes.mkdir(parents=True, exist_ok=True)
    paths = [str(HERE / "java" / source) for source in sources]
    command = ["javac", "-nowarn", "-d", str(classes), "-cp", classpath, *paths]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=_JAVA_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"javac failed:\n{result.stdout}\n{result.stderr}")


def run_java(classpath: str, main: str, *args: str, stdin: str = "") -> str:
    """Run ``main`` once with ``stdin``; return its standard output (fail with its errors)."""
    command = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", classpath, main, *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False,
                            timeout=_JAVA_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"{main} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class AvroJava:
    """``AvroOracle.java``: Apache Avro's BinaryMessageDecoder/Encoder over ``schemas/avro``."""

    classpath: str

    def run(self, *, decode: list[dict[str, str]] | None = None,
            encode_body: list[dict[str, str]] | None = None,
            encode_json: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """One batch through Java; the answer as ``AvroOracle.java`` describes it."""
        request = {"decode": decode or [], "encodeBody": encode_body or [], "encodeJson": encode_json or []}
        answer: dict[str, Any] = json.loads(run_java(self.classpath, "AvroOracle", str(SCHEMA_DIR),
                                                      stdin=json.dumps(request)))
        assert answer["avroVersion"] == AVRO_VERSION
        return answer
