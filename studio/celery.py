from __future__ import annotations

import os

import redis.exceptions
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


_redis_connparams = kombu_redis.Channel._connparams


def _connparams_or_connection_error(self: kombu_redis.Channel, asynchronous: bool = False) -> dict:
    # A consumer that loses Redis collects its connection, which detaches the channel's
    # transport from it, then closes it. Closing restores the unacknowledged messages (a
    # busy provider worker has dozens) through a new pool, whose address kombu reads from
    # the detached connection: an AttributeError, which Celery does not take for a
    # connection error, so the worker exited instead of reconnecting
    # (tests/generator/test_chaos_broker.py). As a connection error it is the outage it
    # is: the messages stay in the unacked set and come back after the visibility
    # timeout, where the claim on the generation makes the redelivery harmless. A late
    # ack on the old channel fails the same way, logged; its slot is freed above.
    if getattr(self.connection, "client", None) is None:
        raise redis.exceptions.ConnectionError("the broker connection of this channel is closed")
    return _redis_connparams(self, asynchronous=asynchronous)


kombu_redis.Channel._connparams = _connparams_or_connection_error
