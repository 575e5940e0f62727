"""Batches taken from a backend in a thread of the training process, ahead of the loop.

A DataLoader hands each batch from its worker to the training process through shared memory,
one file-descriptor handover per tensor, and that costs about 2 ms per batch on a busy 2-core
machine (docs/emulation.md). Done inside the loop's ``next()``, it counts as data wait; done in
this thread, it overlaps the step (the GIL is free while the GPU or an emulated step works). The
loop still sees a plain iterator; a failure in the thread (a dead worker) reaches it as the same
exception, at the batch where it happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the summary reads QUEUE_DEPTH without importing torch
    from harness.pipeline.batch import Batch

_END = object()
QUEUE_DEPTH = 1  # batches the thread holds ready for the loop, beyond the backend's own prefetch


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class BackgroundBatches:
    """Iterate ``batches`` in a daemon thread, at most ``depth`` batches ahead."""

    def __init__(self, batches: Iterable[Batch], depth: int = QUEUE_DEPTH) -> None:
        self._batches = batches
        self._source: Iterator[Batch] | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __iter__(self) -> BackgroundBatches:
        if self._thread is None:
            self._source = iter(self._batches)  # workers start here, in the caller's thread
            self._thread = threading.Thread(target=self._fill, name="batches", daemon=True)
            self._thread.start()
        return self

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        return item

    def _fill(self) -> None:
        assert self._source is not None
        try:
            for batch in self._source:
                if not self._put(batch):
                    return
            self._put(_END)
        except BaseException as exc:  # delivered to the loop, in order
            self._put(_Failure(exc))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Stop the thread, then the backend's workers (a DataLoader's) or generator."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)  # it may sit in the DataLoader: shut that down next
        shutdown = getattr(self._source, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        elif callable(getattr(self._source, "close", None)):
            self._source.close()  # type: ignore[union-attr]
