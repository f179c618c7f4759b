"""Sharing a small machine among many clients: a queue per kind of work, a readable 'busy', temp files deleted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import gradio as gr
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from lookalike.images import MAX_IMAGE_BYTES

BUSY_MESSAGE = "The server is busy right now; please try again in a moment."

# Queue settings by kind of work, for the event listeners (`**MODEL_QUEUE` etc.). A single photo
# search costs one forward pass; a heat-map (explain) about 100; a set search up to five. Each
# costly kind has its own concurrency id, so a pile of heat-maps waits in its own line while
# searches keep their two slots.
EXPLAIN_QUEUE = {"concurrency_id": "explain", "concurrency_limit": 1}
SET_QUEUE = {"concurrency_id": "sets", "concurrency_limit": 1}
# How often a waiter looks for a free slot: as often as Gradio's own queue does (Queue.sleep_when_free).
SLOT_POLL_SECONDS = 0.001


@dataclass(frozen=True)
class TrafficLimits:
    """How many requests may wait, in all and per kind of work, and how long temp files live."""

    max_waiting: int = 64  # every queue together: past it, everyone hears BUSY_MESSAGE
    # Per concurrency id: a burst of heat-maps is refused early instead of filling the shared queue.
    max_waiting_by_kind: tuple[tuple[str, int], ...] = (("explain", 8), ("sets", 8), ("model", 48))
    # Uploads and answer files older than this are deleted (Gradio's delete_cache), checked every
    # `temp_check_seconds`. A search can be re-run from the page (filters, "less like this") while
    # its upload lives, so it must outlive a shopper's pause; 1,000 requests leave < 50 MB anyway.
    temp_max_age_seconds: int = 600
    temp_check_seconds: int = 60


def share_fairly(demo: gr.Blocks, limits: TrafficLimits = TrafficLimits()) -> gr.Blocks:
    """Turn on the queue with the limits, the per-kind waiting caps, the busy message and temp-file deletion.

    Call it once, after build_demo and before launch.
    """
    demo.delete_cache = (limits.temp_check_seconds, limits.temp_max_age_seconds)
    # api_open=False: off Hugging Face Spaces Gradio leaves POST /gradio_api/run/<endpoint> open, which runs
    # a function beside the queue, past every limit here (24 heat-maps at once took the server from 348 to
    # 1,309 MB). Closed, that route answers "join the queue"; /gradio_api/call/* and the page share the queue.
    demo.queue(max_size=limits.max_waiting, api_open=False)  # creates the app, which reads delete_cache
    queue = demo._queue  # Gradio has no public hook on refusals; its push is where they are decided
    stock_push = queue.push
    caps = dict(limits.max_waiting_by_kind)

    async def push(body, request, username):
        fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
        kind = getattr(fn, "concurrency_id", None)
        waiting = queue.event_queue_per_concurrency_id.get(kind)
        if kind in caps and waiting is not None and len(waiting.queue) >= caps[kind]:
            return False, BUSY_MESSAGE, "queue_full"
        success, answer, status = await stock_push(body=body, request=request, username=username)
        return success, (BUSY_MESSAGE if status == "queue_full" else answer), status

    queue.push = push
    return demo


class QueueSlots:
    """The running slots of one kind of work in the page's queue, taken by work that does not come through it.

    Gradio starts a queued event of a concurrency id only while that id's `current_concurrency` is below
    its `concurrency_limit`. Holding a slot here counts in the same `current_concurrency`, so the page's
    events and the JSON API's requests of that kind together never run more than its limit: one limit,
    not one per door. Waiters line up behind one lock, so only the first of them looks at the counter.
    """

    def __init__(self, demo: gr.Blocks, kind: str = "model") -> None:
        if demo._queue is None:
            raise ValueError("Turn the page's queue on first (share_fairly) and make the slots from that page.")
        events = [fn for fn in demo.fns.values() if fn.concurrency_id == kind]
        if not events:
            raise ValueError(f"The page has no event of concurrency id {kind!r} whose slots could be shared.")
        self.queue, self.kind, self._event = demo._queue, kind, events[0]
        self._next_in_line = asyncio.Lock()

    def _line(self):
        lines = self.queue.event_queue_per_concurrency_id
        if self.kind not in lines:  # Gradio makes a kind's line when its first event arrives
            self.queue.create_event_queue_for_fn(self._event)
        return lines[self.kind]

    @property
    def running(self) -> int:
        """How many of the kind run now, the page's and the API's together."""
        return self._line().current_concurrency

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Wait for a free slot of the kind, hold it for the body."""
        async with self._next_in_line:
            line = self._line()
            while line.concurrency_limit is not None and line.current_concurrency >= line.concurrency_limit:
                await asyncio.sleep(SLOT_POLL_SECONDS)
            line.current_concurrency += 1  # the event loop's one thread: no start slips in between
        try:
            yield
        finally:
            line.current_concurrency -= 1


# An API call's JSON carries at most one picture as a base64 data: URL (4/3 of its bytes) plus
# small values; past this a body is refused unread. Uploads have their own cap (max_file_size).
MAX_JSON_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
# A refused body is read and dropped up to this much, so that the client gets the answer instead
# of a reset connection; past it the connection is just closed.
MAX_DRAINED_BYTES = 256 * 1024**2


def request_limits() -> list[Middleware]:
    """The middleware for `demo.launch(app_kwargs={"middleware": ...})`."""
    return [Middleware(JsonBodyLimit)]


class JsonBodyLimit:
    """Refuse a JSON request body over `max_bytes` before it is parsed (HTTP 413 with a readable reason).

    Gradio decodes a data: URL inside the JSON of an API call; parsing a 14 MB body costs ~60 MB of
    memory before any of our checks can look at it.
    """

    def __init__(self, app, max_bytes: int = MAX_JSON_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or ()) if scope["type"] == "http" else {}
        if scope["type"] != "http" or not headers.get(b"content-type", b"").startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _drain(receive)
            await _refuse(send, self._reason(int(declared)))
            return
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # no or a false Content-Length: stop reading here
                raise HTTPException(413, self._reason(received))
            return message

        await self.app(scope, counted_receive, send)

    def _reason(self, size: int) -> str:
        return (
            f"The request is {size / 1024**2:.1f} MB, over the {self.max_bytes / 1024**2:.1f} MB limit. "
            "Send pictures as uploads (POST /gradio_api/upload, or gradio_client's handle_file), "
            f"at most {MAX_IMAGE_BYTES / 1024**2:.0f} MB each."
        )


async def _drain(receive) -> None:
    drained, more = 0, True
    while more and drained <= MAX_DRAINED_BYTES:
        message = await receive()
        drained += len(message.get("body", b""))
        more = message.get("more_body", False) and message["type"] == "http.request"


async def _refuse(send, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
