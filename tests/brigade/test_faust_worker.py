"""The Faust worker Brigade runs keeps the log level it was given."""

from __future__ import annotations

import logging

import faust

from brigade.kafka.streams import faust_worker


def test_a_worker_at_warning_builds_no_debug_records() -> None:
    app = faust.App("quiet-logs", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = faust_worker(app, loglevel="warning")
    saved_level, saved_handlers = logging.root.level, list(logging.root.handlers)
    logging.root.setLevel(logging.WARNING)
    try:
        # What Faust does once it has configured logging at the worker's level
        worker.on_setup_root_logger(logging.root, logging.WARNING)
        assert logging.root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
    finally:
        logging.root.setLevel(saved_level)
        logging.root.handlers[:] = saved_handlers
