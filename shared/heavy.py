"""Heavy work: tasks that hold a CPU for seconds (a re-rank of a million customers, a
simulation, a model fit).

They run a few at a time per replica, and their numpy parts in a worker thread
(`in_thread`), so the event loop goes on answering requests, publishing the outbox and
heartbeating Kafka. Pure-Python work that can be split runs in processes of its own
(`in_processes`), one core each. A request for heavy work while every slot is taken is
refused at once with 429 and a `Retry-After` from how long such work has lately taken;
the scheduled re-rank waits for a slot instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ParamSpec, TypeVar

from shared.errors import TooBusy

P = ParamSpec("P")
R = TypeVar("R")


class HeavyWork:
    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._free = asyncio.Semaphore(slots)
        self._running = 0
        self.last_duration_s = 5.0  # until one has run

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.last_duration_s))

    @asynccontextmanager
    async def slot(self, what: str, *, wait: bool = False) -> AsyncIterator[None]:
        """Hold a slot while `what` runs; without `wait`, refuse when none is free."""
        if not wait and self._running >= self.slots:
            retry = self.retry_after_s()
            raise TooBusy(
                f"{what} must wait: {self._running} heavy task(s) already running on this "
                f"replica; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )
        async with self._free:
            self._running += 1
            started = time.monotonic()
            try:
                yield
            finally:
                self._running -= 1
                self.last_duration_s = time.monotonic() - started


async def in_thread(work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run CPU-bound `work` (numpy releases the GIL for most of it) off the event loop."""
    return await asyncio.to_thread(work, *args, **kwargs)


async def side_by_side(*work: Coroutine[Any, Any, Any]) -> None:
    """Run these at once (e.g. two connections' writes); the first to fail cancels the
    others, and its own error is raised, not an ExceptionGroup, so the caller's handlers
    see what they would have seen had the work run in turn."""
    try:
        async with asyncio.TaskGroup() as group:
            for one in work:
                group.create_task(one)
    except ExceptionGroup as failed:
        raise failed.exceptions[0]  # noqa: B904 (its own cause stays, the group is context)


async def in_processes(
    work: Callable[..., R],
    arguments: Sequence[tuple[Any, ...]],
    *,
    while_waiting: Callable[[], None] | None = None,
    every_s: float = 0.5,
) -> list[R]:
    """`work(*args)` for each of `arguments`, each in a process of its own, all at once;
    their results in order. `work` and its arguments cross by pickle, so `work` is a
    module-level function. The processes are started fresh ("spawn": a fork of a process
    running an event loop and threads is unsafe) and terminated if this is cancelled or
    one fails (their open transactions roll back). A failure in one is raised here, and
    so is a process that dies without answering (killed for its memory, say): a pool
    would wait for its answer forever."""
    context = multiprocessing.get_context("spawn")
    answers: list[Connection] = []
    processes: list[BaseProcess] = []
    try:
        for args in arguments:
            receiving, sending = context.Pipe(duplex=False)
            child = context.Process(target=_answer, args=(sending, work, args), daemon=True)
            child.start()
            sending.close()  # ours closed, the pipe ends when the child's end does
            answers.append(receiving)
            processes.append(child)
        results: dict[int, R] = {}
        while len(results) < len(processes):
            await asyncio.sleep(every_s)
            if while_waiting is not None:
                while_waiting()
            for index, (answer, process) in enumerate(zip(answers, processes, strict=True)):
                if index in results:
                    continue
                alive = process.is_alive()  # before looking: an answer may come as it ends
                outcome = None
                if answer.poll():  # an answer, or the pipe closed by a process that died
                    with contextlib.suppress(EOFError):
                        outcome = answer.recv()
                if outcome is not None:
                    results[index] = _result(outcome)
                    continue
                if alive:
                    continue
                await asyncio.to_thread(process.join, 5)
                raise ChildProcessError(
                    f"{work.__name__} process {index} ended (exit code {process.exitcode}) "
                    "without an answer"
                )
        return [results[index] for index in range(len(processes))]
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            await asyncio.to_thread(process.join)
        for answer in answers:
            answer.close()


def _answer(sending: Connection, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """In the child: send back what `work` returned, or the error it raised."""
    try:
        outcome: tuple[bool, Any] = (True, work(*args))
    except BaseException as exc:
        outcome = (False, exc)
    try:
        sending.send(outcome)
    except Exception as exc:  # an answer that does not pickle: say what it was
        sending.send((False, RuntimeError(f"{work.__name__}: {outcome[1]!r} ({exc!r})")))
    finally:
        sending.close()


def _result(outcome: tuple[bool, Any]) -> Any:
    succeeded, value = outcome
    if not succeeded:
        raise value
    return value
