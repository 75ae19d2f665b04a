"""The live output preview as Server-Sent Events: what a pipeline prints (its SELECTs, read
from its stdout log), or the rows any node of its graph emits (relayed from the job's tap
socket, server.tap_socket).

A node's events: ``node`` (which one), ``rows`` (``{"rows": [...], "dropped": n}``: ``dropped``
counts rows the preview did not keep because the job emitted faster than the preview shows,
or the reader fell behind), ``status`` (waiting for the job's process), ``error`` and ``end``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

from caudal.server.supervisor import tail_lines

#: lines of a pipeline's printed output a preview starts with
PREVIEW_TAIL = 20
#: seconds without an event after which a comment keeps proxies from closing the stream
KEEP_ALIVE_S = 15.0


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def printed_events(path: Path, request: Request) -> AsyncIterator[str]:
    """Each line the job prints as a plain ``data`` event, starting with the last few."""
    for line in tail_lines(path, PREVIEW_TAIL):
        yield f"data: {line}\n\n"
    try:
        pos = path.stat().st_size
    except OSError:
        pos = 0
    partial = b""
    idle = 0.0
    while not await request.is_disconnected():
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size < pos:
            pos = 0
        if size > pos:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read(1 << 20)
            pos += len(data)
            *lines, partial = (partial + data).split(b"\n")
            for line in lines[-200:]:
                yield f"data: {line.decode(errors='replace')}\n\n"
            idle = 0.0
        elif not path.parent.exists():  # the pipeline was deleted: nothing will follow
            yield sse("end", {"reason": "the pipeline was deleted"})
            return
        else:
            idle += 0.25
            if idle >= KEEP_ALIVE_S:
                yield ": keep-alive\n\n"
                idle = 0.0
            await asyncio.sleep(0.25)


async def node_events(path: Path, node: int, name: str, request: Request,
                      running: Callable[[], bool]) -> AsyncIterator[str]:
    """The rows node ``node`` emits, from the job's tap socket at ``path``; across restarts
    of the job's process (it reconnects) until the pipeline stops."""
    yield sse("node", {"node": node, "name": name})
    waiting = False
    while not await request.is_disconnected():
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            if not running():
                yield sse("end", {"reason": "the pipeline is not running"})
                return
            if not waiting:
                waiting = True
                yield sse("status", {"waiting": "waiting for the pipeline's process"})
            await asyncio.sleep(0.5)
            continue
        waiting = False
        try:
            writer.write(json.dumps({"vertex": node}).encode() + b"\n")
            await writer.drain()
            idle = 0.0
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), 2.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                if not line:
                    break  # the process ended (stopped, restarting, rescaled)
                message = json.loads(line)
                if "error" in message:
                    yield sse("error", message)
                    return
                if message.get("rows") or message.get("dropped"):
                    yield sse("rows", message)
                    idle = 0.0
                elif "rows" in message:
                    idle += 0.5
                    if idle >= KEEP_ALIVE_S:
                        yield ": keep-alive\n\n"
                        idle = 0.0
        except (OSError, ValueError):
            pass
        finally:
            writer.close()
