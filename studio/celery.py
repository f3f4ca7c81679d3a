from __future__ import annotations

import os

from celery import Celery
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


_redis_ack = kombu_redis.QoS.ack


def _ack_and_free_the_slot(self: kombu_redis.QoS, delivery_tag: str) -> None:
    # kombu frees a worker's prefetch slot only after Redis confirmed the ack. An ack
    # that times out (Redis frozen or paused) would hold the slot forever, and with a
    # prefetch of one the worker never takes another message (tests/test_chaos_broker.py).
    # The message stays in Redis's unacked set and comes back after the visibility
    # timeout, where the claim on the generation makes the redelivery harmless.
    try:
        _redis_ack(self, delivery_tag)
    except Exception:
        virtual.QoS.ack(self, delivery_tag)
        raise


kombu_redis.QoS.ack = _ack_and_free_the_slot
