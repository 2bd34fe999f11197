"""``kill -USR1 <pid>`` writes every asyncio task's stack to the process's log.

A Faust process that stops making progress is usually waiting on a coroutine, which a
thread dump (py-spy, faulthandler) cannot show: the loop's thread just sits in select().
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import traceback
from types import FrameType

log = logging.getLogger("brigade.taskdump")


def dump_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """Every pending task of ``loop`` with the stack it is suspended in, plus each thread's stack."""
    out = io.StringIO()
    tasks = asyncio.all_tasks(loop)
    out.write(f"{len(tasks)} asyncio tasks\n")
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.write(f"--- task {task.get_name()} {task.get_coro()!r}\n")
        task.print_stack(limit=30, file=out)
    for thread_id, frame in sys._current_frames().items():
        out.write(f"--- thread {thread_id}\n")
        out.write("".join(traceback.format_stack(frame, limit=30)))
    return out.getvalue()


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Log :func:`dump_tasks` whenever the process receives SIGUSR1."""

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        log.warning("task dump on SIGUSR1\n%s", dump_tasks(loop))

    signal.signal(signal.SIGUSR1, on_signal)
