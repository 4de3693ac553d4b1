"""The worker's log is read by a person: beat's routine passes (a dispatch every 15 s) log
at debug level, so that a send, a failure or a warning is not lost among them."""

from __future__ import annotations

import logging

import pytest
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

from nurture.celery_app import _logging


def _a_pass(task: str) -> None:
    context = {
        "id": "1",
        "name": task,
        "return_value": "{}",
        "runtime": 0.01,
        "args": "",
        "kwargs": "",
    }
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "x", task)
    logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, context)
    logging.getLogger("celery.app.trace").info(LOG_SUCCESS, context)


def test_routine_passes_are_debug_and_sends_stay_info(caplog: pytest.LogCaptureFixture) -> None:
    _logging()
    with caplog.at_level(logging.INFO):
        _a_pass("nurture.dispatch")
        _a_pass("nurture.tidy")
        _a_pass("nurture.send_batch")
    assert len(caplog.records) == 3
    assert all("nurture.send_batch" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        _a_pass("nurture.dispatch")
    assert [r.levelname for r in caplog.records] == ["DEBUG"] * 3
