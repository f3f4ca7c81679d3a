"""The web server's access log tells a client that hung up from a server error.

A client that closes its connection before its answer (a script interrupted during a
long /v1 wait) leaves Django nothing to send, and gunicorn's ASGI worker then logs the
request with its default status, `500 0`: error-rate monitoring counted every
impatient client as a server failure. `track_disconnects` (wrapped round the ASGI
application in studio.asgi) notes what the application saw, and `AccessLogger`
(gunicorn's --logger-class, see studio.processes.web_command and the Dockerfile) logs
such a request as 499, nginx's "client closed request".
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from gunicorn.glogging import Logger

CLIENT_CLOSED_REQUEST = 499

# One per request. gunicorn runs each request, its application call and its access log
# line in one task of its own, so what the application sets here the logger reads.
_exchange: ContextVar[dict[str, bool]] = ContextVar("studio_exchange")


def track_disconnects(app: Any) -> Any:
    """Wrap an ASGI application to note whether the client hung up and whether the
    application failed (a failure stays a 500 whoever left first)."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        exchange = {"gone": False, "failed": False}
        _exchange.set(exchange)

        async def watched_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange["gone"] = True
            return message

        try:
            await app(scope, watched_receive, send)
        except Exception:  # not a cancellation: gunicorn cancels a call whose client left
            exchange["failed"] = True
            raise

    return application


def client_hung_up(bytes_sent: int) -> bool:
    """True when the request in progress lost its client before any byte of its answer
    went out, and the application did not fail."""
    exchange = _exchange.get(None)
    return exchange is not None and exchange["gone"] and not exchange["failed"] and not bytes_sent


class AccessLogger(Logger):
    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if resp is not None and client_hung_up(getattr(resp, "sent", 0) or 0):
            resp.status = CLIENT_CLOSED_REQUEST
        super().access(resp, req, environ, request_time)
