"""Cross-request batching, as a family sees it: a stream generator yields `Batched` requests, and whoever
drives it answers them — the MLX worker (`models.worker`), which computes the requests with the same key
from every active stream together, or `drive()` outside the worker, one request at a time. A family
depends on this protocol, not on the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from models.tasks import Segment, Transcription, TranscriptionInfo

NO_REPLY = object()  # a stream step that answers no request


@dataclass(frozen=True)
class Batched:
    """Yielded by a stream generator running on the worker: "compute `fn([payload, ...])` for me".

    The worker gathers the requests with the same `key` from all active streams, calls `fn` once with
    their payloads (at most `max_batch`), and sends each stream its own element of the result. Outside
    the worker, `drive()` answers requests one at a time.

    With `many=True`, `payload` is a list of independent items (e.g. the windows of one long file) and
    the reply is the list of their results, in order: the items join the batches like items of separate
    streams, so one request's items share passes with each other and with other requests'.
    """

    key: Hashable
    payload: Any
    fn: Callable[[list[Any]], Sequence[Any]]
    max_batch: int = 16
    many: bool = False

    def items(self) -> list[Any]:
        return list(self.payload) if self.many else [self.payload]

    def reply(self, results: list[Any]) -> Any:
        return results if self.many else results[0]


def compute(fn: Callable[[list[Any]], Sequence[Any]], payloads: list[Any]) -> list[Any]:
    results = list(fn(payloads))
    if len(results) != len(payloads):
        raise RuntimeError(f"batch function returned {len(results)} results for {len(payloads)} items")
    return results


def drive(gen: Iterator[Any]) -> Iterator[Any]:
    """Run a stream generator outside the worker: answer its `Batched` requests inline (batch of one)."""
    reply: Any = NO_REPLY
    while True:
        try:
            item = next(gen) if reply is NO_REPLY else gen.send(reply)  # type: ignore[attr-defined]
        except StopIteration:
            return
        if isinstance(item, Batched):
            items, size = item.items(), max(1, item.max_batch if item.many else 1)
            results = [r for i in range(0, len(items), size) for r in compute(item.fn, items[i : i + size])]
            reply = item.reply(results)
            continue
        reply = NO_REPLY
        yield item


def collect_transcription(events: Iterator[Any]) -> Transcription:
    """The non-streaming fold over `Transcriber.transcribe_stream` outside the worker (batch requests run
    inline)."""
    info: TranscriptionInfo | None = None
    segments: list[Segment] = []
    for ev in drive(events):
        if isinstance(ev, TranscriptionInfo):
            info = ev
        else:
            segments.append(ev)
    if info is None:
        raise RuntimeError("transcriber yielded no TranscriptionInfo")
    return Transcription(info=info, segments=segments)
