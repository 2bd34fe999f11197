"""Operator SQL: even with the operator token, the endpoint only reads the projections.

The statements run on the API's embedded chDB, on a connection ClickHouse itself keeps
read-only (``readonly=1``), and functions that reach outside the database are refused by
name before they run.
"""

from __future__ import annotations

import httpx
import pytest

from tests.hostile.conftest import Stack

pytestmark = [pytest.mark.hostile, pytest.mark.slow]

ADMIN = "/v1/admin/clickhouse"


def _run(stack: Stack, sql: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.operator_token}"}
    return httpx.post(f"{stack.url}{ADMIN}", json={"sql": sql}, headers=headers, timeout=60)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "select * from `FILE` /* hidden */ ('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/metrics', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/key', 'CSV')",
    "SELECT 'unterminated",
])
def test_functions_reaching_outside_are_refused(stack: Stack, sql: str) -> None:
    response = _run(stack, sql)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "sql_refused"
    assert "root:" not in response.text


@pytest.mark.parametrize("sql", [
    "DROP TABLE jobs",
    "TRUNCATE TABLE job_events",
    "INSERT INTO jobs (job_id) VALUES ('forged')",
    "CREATE TABLE probe (x UInt8) ENGINE = Memory",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "ALTER TABLE jobs DELETE WHERE 1",
])
def test_writes_and_setting_changes_are_refused_by_clickhouse(stack: Stack, sql: str) -> None:
    response = _run(stack, sql)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "clickhouse_error" and "readonly" in error["message"].lower(), error


def test_reads_still_work_and_the_tables_survive(stack: Stack) -> None:
    for sql in ("DROP TABLE jobs", "INSERT INTO jobs (job_id) VALUES ('forged')"):
        _run(stack, sql)
    status = stack.normal_job_succeeds()
    counted = _run(stack, "SELECT count() FROM jobs FINAL WHERE job_id = {j:String}".replace(
        "{j:String}", f"'{status['jobId']}'"))
    assert counted.status_code == 200 and counted.json()["data"] == [[1]], counted.text
    forged = _run(stack, "SELECT count() FROM jobs WHERE job_id = 'forged'")
    assert forged.json()["data"] == [[0]]
    cli = stack.cli("query", "--sql", "SELECT count() > 0 AS any FROM jobs FINAL", "--format", "csv")
    assert cli.returncode == 0 and cli.stdout.split() == ["any", "1"], cli.stdout + cli.stderr
