"""Dynamic batching, as Triton's dynamic batcher does it: requests that arrive within `max_wait_ms`
of each other (up to `max_batch` images) share one forward pass. The queue is bounded: when it is
full a request is refused at once (the app answers 503 with Retry-After) instead of waiting without
end. All model work runs on one worker thread, off the event loop, so the server keeps accepting
connections while the CPU computes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch


class QueueFull(Exception):
    """More images are waiting than the queue holds."""


@dataclass
class _Item:
    image: torch.Tensor  # (C, H, W) float in [0, 1]
    done: asyncio.Future


class Batcher:
    """Collects images into batches for `run_batch` ((B, C, H, W) -> one result per image, in
    order: what each waiting request gets back)."""

    def __init__(self, run_batch: Callable[[torch.Tensor], torch.Tensor], *, max_batch: int,
                 max_wait_ms: float, max_queue: int, worker: ThreadPoolExecutor,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(max_queue)
        self.worker, self.on_batch = worker, on_batch
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def predict(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Probabilities (K,) for each image, computed in whatever batches form."""
        if self.queue.maxsize - self.queue.qsize() < len(images):
            raise QueueFull
        loop = asyncio.get_running_loop()
        items = [_Item(image, loop.create_future()) for image in images]
        for item in items:
            self.queue.put_nowait(item)
        return list(await asyncio.gather(*(item.done for item in items)))

    async def _collect(self) -> list[_Item]:
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0 and self.queue.empty():
                break
            try:
                batch.append(self.queue.get_nowait() if left <= 0 else
                             await asyncio.wait_for(self.queue.get(), left))
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A request past its deadline has cancelled its futures: no forward pass for it.
            batch = [item for item in await self._collect() if not item.done.cancelled()]
            if not batch:
                continue
            images = torch.stack([item.image for item in batch])
            try:
                probabilities = await loop.run_in_executor(self.worker, self.run_batch, images)
            except Exception as error:  # the model failed: every waiting request learns why
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(error)
                continue
            self.on_batch(len(batch))
            for item, row in zip(batch, probabilities, strict=True):
                if not item.done.done():  # a client that went away has a cancelled future
                    item.done.set_result(row)
