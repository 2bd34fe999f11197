"""The ``?wait`` tail decodes only the records that can end a job."""

from __future__ import annotations

import pytest

from ingress.waiters import MAYBE_TERMINAL, terminal_of
from schemas.records import RECORD_TYPES
from testkit.records import generated_records


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_every_record_that_ends_a_job_is_decoded_by_the_tail(name: str) -> None:
    # Random records of every type (JobFailed with both values of its terminal flag)
    ending = [record for record in generated_records(name, 40) if terminal_of(record) is not None]
    # Then a type the tail skips unread never ends a job
    if RECORD_TYPES[name] not in MAYBE_TERMINAL:
        assert ending == []
    else:
        assert ending, f"{name} never ends a job: it need not be decoded"
