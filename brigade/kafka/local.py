"""The embedded Apache Kafka broker: one KRaft broker+controller on loopback.

One ``LocalKafka`` is one node; ``brigade.kafka.cluster`` runs several of them as a
replicated cluster (each node is then a voter of the same KRaft quorum).

The jars are the official ``org.apache.kafka:kafka_2.13`` artifacts, resolved from Maven
Central by ``compose/kafka/pom.xml`` and cached per version, so a second start needs no
network. Storage is formatted once; data survives restarts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from brigade.errors import KafkaError
from brigade.settings import Settings

KAFKA_VERSION = "4.1.1"
_REPO_ROOT = Path(__file__).resolve().parents[2]
POM_PATH = _REPO_ROOT / "compose" / "kafka" / "pom.xml"


def jar_cache_dir() -> Path:
    """Where resolved broker jars are kept between runs (shared by every checkout)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "brigade" / f"kafka-{KAFKA_VERSION}" / "libs"


def resolve_jars(*, pom: Path = POM_PATH, target: Path | None = None) -> Path:
    """Resolve the runtime jars ``pom`` names with Maven once; return the folder holding them.

    The broker's jars by default; the interop tests resolve Apache Avro Java the same way.
    """
    target = target or jar_cache_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        raise KafkaError(f"Maven ('mvn') is needed once to resolve the jars of {pom}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KafkaError(f"resolving the jars of {pom} failed:\n{result.stdout}\n{result.stderr}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    marker.touch()
    return target


@dataclass(frozen=True, kw_only=True)
class LocalKafka:
    """A KRaft broker+controller node whose files live under ``data_dir``.

    Alone by default; in a cluster, ``voters`` names every node's controller
    (``"1@127.0.0.1:9093,2@..."``), ``replication`` is the cluster's replication factor and
    ``cluster_id`` is shared by every node's storage.
    """

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    node_id: int = 1
    voters: str = ""
    replication: int = 1
    cluster_id: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        """The embedded broker described by ``settings`` (data under ``<data_dir>/kafka``)."""
        return cls(
            data_dir=settings.path("kafka"),
            port=settings.kafka.broker_port,
            controller_port=settings.kafka.controller_port,
            heap=settings.kafka.broker_heap,
        )

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's own log file."""
        return self.data_dir / "broker.log"

    @property
    def _pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    def pid(self) -> int | None:
        """The running broker's pid, or None when it is not running."""
        try:
            pid = int(self._pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start(self, *, timeout_s: float = 90.0) -> None:
        """Start the broker (formatting storage on first use) and wait until it answers."""
        if self.pid() is not None:
            self.wait_ready(timeout_s=timeout_s)
            return
        pid = self.launch()
        try:
            self.wait_ready(timeout_s=timeout_s, pid=pid)
        except KafkaError:
            self.stop()
            raise

    def launch(self) -> int:
        """Format storage on first use and spawn the broker without waiting for it; its pid.

        A cluster launches every node before waiting: none answers until a quorum is up.
        """
        libs = resolve_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_config()
        if not (self.data_dir / "data" / "meta.properties").exists():
            self._format(libs, properties)
        command = [*self._java(libs), "kafka.Kafka", str(properties)]
        with self.log_path.open("ab") as log, open(os.devnull, "rb") as devnull:
            # posix_spawn with setsid: the broker is a daemon that outlives this command and
            # never receives the terminal's Ctrl-C directly; no Popen object is left to leak.
            pid = os.posix_spawn(
                command[0], command, os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull.fileno(), 0),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                ],
                setsid=True,
            )
        self._pid_path.write_text(str(pid))
        return pid

    def wait_ready(self, *, timeout_s: float, pid: int | None = None) -> None:
        """Poll broker metadata until it answers or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if pid is not None and not _alive(pid):
                raise KafkaError(f"broker exited during start-up; see {self.log_path}")
            try:
                admin.list_topics(timeout=2)
                return
            except Exception:  # noqa: BLE001 - not ready yet; any client error means "poll again"
                time.sleep(0.2)
        raise KafkaError(f"broker on {self.bootstrap} not ready after {timeout_s}s; see {self.log_path}")

    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``)."""
        pid = self.pid()
        if pid is None:
            self._pid_path.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self._pid_path.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL the broker at once, as a crash would; False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        self._pid_path.unlink(missing_ok=True)
        return True

    def _java(self, libs: Path) -> list[str]:
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        return [
            shutil.which("java") or "java",
            "-Xms128m", f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",  # two cores: a concurrent collector only competes with clients
            "-XX:TieredStopAtLevel=1",  # faster start-up; the dev broker is not CPU-bound
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{libs}/*",
        ]

    def _format(self, libs: Path, properties: Path) -> None:
        cluster_id = self.cluster_id or _cluster_id()
        # One id in 64 starts with "-", which argparse would take for an option: use "=".
        command = [*self._java(libs), "kafka.tools.StorageTool", "format",
                   f"--cluster-id={cluster_id}", "-c", str(properties), "--ignore-formatted"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(f"formatting KRaft storage failed:\n{result.stdout}\n{result.stderr}")

    def _write_config(self) -> Path:
        path = self.data_dir / "server.properties"
        path.write_text(
            _SERVER_PROPERTIES.format(
                port=self.port, controller_port=self.controller_port, data=self.data_dir / "data",
                node_id=self.node_id,
                voters=self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
                replication=self.replication, min_isr=min_insync_replicas(self.replication),
            )
        )
        return path


def min_insync_replicas(replication: int) -> int:
    """Replicas that must have a write before it is acknowledged: 2 of 3, else 1.

    With replication 3 and two in sync, one broker may die without losing an acknowledged
    write or refusing new ones.
    """
    return 2 if replication >= 3 else 1


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte UUID without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={replication}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replication}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
num.network.threads=2
num.io.threads=4
"""

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""
