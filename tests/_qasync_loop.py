"""One qasync event loop for the whole test session, and ``arun`` to drive it.

Fixtures:
    qasync_loop (session): the one ``qasync.QEventLoop`` on pytest-qt's ``qapp``.
    arun (function): makes that loop asyncio's running loop for the test and
        returns ``arun(awaitable, timeout=10.0)``, which runs the awaitable to
        completion and returns its result (or raises its exception, or
        TimeoutError). At the end of the test, tasks still pending are
        cancelled, and an exception that reached the loop's exception handler
        (e.g. "Task exception was never retrieved") fails the test.

Why not ``loop.run_until_complete`` between Qt waits: qasync clears asyncio's
"running loop" when ``run_until_complete`` returns, but its socket notifiers and
timers are Qt objects that keep firing whenever Qt spins (``qtbot.waitSignal``,
``waitUntil``). Callbacks then run with no running loop and anything calling
``asyncio.get_running_loop()`` (``asyncio.sleep``, zeroconf) raises
RuntimeError, so a signal awaited after the action never comes. Instead the
loop is made in qasync's ``already_running`` mode, as in the app where
``app.exec()`` drives it, and is asyncio's running loop for the duration of each
test that asks for ``arun``: every Qt wait then runs asyncio too, and
``with qtbot.waitSignal(...): arun(action())`` works whether the signal comes
during the action or after it.

Until these fixtures move into ``tests/conftest.py``, a test module loads them
with ``pytest_plugins = ("_qasync_loop",)`` (importing the fixture names instead
trips ruff's F811 on every test that takes them as arguments).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtWidgets import QApplication

T = TypeVar("T")

#: What ``arun`` is: run an awaitable on the session loop and return its result.
AsyncRunner = Callable[..., Any]

DEFAULT_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def qasync_loop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    """The session's qasync loop; request ``arun`` to use it."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    # already_running marks the loop as asyncio's running loop right away; that
    # is narrowed to the tests that use it (see ``arun``), so a test elsewhere
    # in the session can still call asyncio.run().
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.stop()  # clears qasync's running flag so that close() is allowed
    loop.close()


async def _with_timeout(awaitable: Awaitable[T], timeout: float) -> T:
    async with asyncio.timeout(timeout):
        return await awaitable


@pytest.fixture
def arun(qasync_loop: qasync.QEventLoop, qtbot: Any) -> Iterator[AsyncRunner]:
    """``arun(awaitable, timeout=10.0)``: run it on the session loop, return its result."""
    loop = qasync_loop
    unhandled: list[dict[str, Any]] = []

    def collect(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        unhandled.append(context)
        loop.default_exception_handler(context)

    def run(awaitable: Awaitable[T], timeout: float = DEFAULT_TIMEOUT) -> T:
        task = loop.create_task(_with_timeout(awaitable, timeout))
        # The asyncio timeout fires first; this one only guards against a loop that hangs.
        qtbot.waitUntil(task.done, timeout=int((timeout + 5) * 1000))
        return task.result()

    asyncio.set_event_loop(loop)
    asyncio.events._set_running_loop(loop)
    loop.set_exception_handler(collect)
    try:
        yield run
    finally:
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            qtbot.waitUntil(lambda: all(task.done() for task in leftovers), timeout=5000)
        asyncio.events._set_running_loop(None)
        loop.set_exception_handler(None)
    if unhandled:
        messages = "; ".join(
            f"{context.get('message')}: {context.get('exception')!r}" for context in unhandled
        )
        pytest.fail(f"unhandled exception(s) in the event loop: {messages}")
