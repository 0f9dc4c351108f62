"""Work split over processes (`shared.heavy.in_processes`): results in order, a failure
raised in the caller, and no process left behind when the caller is cancelled; work run
side by side (`side_by_side`): the first failure raised as it is, the rest cancelled."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

import pytest

from shared.heavy import in_processes, side_by_side


def square_and_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


async def test_each_piece_runs_in_a_process_of_its_own_and_results_keep_their_order() -> None:
    woken: list[float] = []
    results = await in_processes(
        square_and_pid, [(3,), (4,), (5,)], while_waiting=lambda: woken.append(1), every_s=0.05
    )
    assert [value for value, _ in results] == [9, 16, 25]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids
    assert woken  # the caller's hook ran while it waited
    assert not multiprocessing.active_children()


async def test_a_failure_in_a_process_is_raised_to_the_caller() -> None:
    with pytest.raises(ValueError, match="no such customer"):
        await in_processes(fail, [("no such customer",)])
    assert not multiprocessing.active_children()


async def test_cancelling_the_caller_terminates_the_processes() -> None:
    task = asyncio.create_task(in_processes(sleep_for, [(60,), (60,)], every_s=0.05))
    await asyncio.sleep(1.0)
    assert multiprocessing.active_children()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not multiprocessing.active_children()


def die(code: int) -> None:
    os._exit(code)  # as a process killed for its memory: no answer, no exception


async def test_a_process_that_dies_without_answering_is_an_error_not_a_wait() -> None:
    with pytest.raises(ChildProcessError, match="exit code 3"):
        await asyncio.wait_for(in_processes(die, [(3,)], every_s=0.05), timeout=60)
    assert not multiprocessing.active_children()


async def test_side_by_side_raises_the_first_failure_itself_and_cancels_the_rest() -> None:
    """As the work would have failed run in turn: its own error, not an ExceptionGroup."""
    finished: list[str] = []

    async def fails_soon() -> None:
        await asyncio.sleep(0.05)
        raise ValueError("the score rows")

    async def takes_long() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise
        finished.append("history rows")

    async def quick() -> None:
        finished.append("quick")

    with pytest.raises(ValueError, match="the score rows"):
        await side_by_side(fails_soon(), takes_long(), quick())
    assert sorted(finished) == ["cancelled", "quick"]
