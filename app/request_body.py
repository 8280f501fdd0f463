"""A request body read by a middleware, handed on to the app as if it had not been read."""

from __future__ import annotations

from starlette.types import Message, Receive


def replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, in one message; then the connection's own messages (so a
    disconnect still reaches the app)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
