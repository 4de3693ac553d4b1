"""Tests leave nothing in the shared Redis: a test's Celery queue (tests/support.py
new_queue) takes its `_kombu.binding.*` keys with it when the test ends."""

from __future__ import annotations

import redis
from kombu import Connection, Exchange, Queue

from tests.conftest import REDIS_URL, missing_service
from tests.support import drop_queues, new_queue


def test_a_tests_queue_leaves_no_kombu_keys() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {REDIS_URL} ({type(exc).__name__})")
    name = new_queue()
    with Connection(REDIS_URL) as conn:
        # What Celery does for NURTURE_QUEUE: declare, bind, publish.
        queue = Queue(name, Exchange(name), routing_key=name)
        producer = conn.Producer()
        producer.publish({"x": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    assert list(client.scan_iter(match=f"_kombu.binding.{name}"))
    drop_queues(REDIS_URL)
    assert list(client.scan_iter(match=f"*{name}*")) == []
    client.close()
