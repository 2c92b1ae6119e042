"""Reading Wyoming events with limits: a TTS server must survive any client.

``wyoming.event.async_read_event`` trusts ``data_length``/``payload_length`` (a client
announcing 10 GB makes the server buffer whatever it sends), reads a missing
``type`` as a crash and bad JSON as a silent hang-up. This reader enforces sizes and
turns every malformed frame into :class:`ProtocolError`, so the handler can answer
with an ``error`` event and close the connection (framing is lost after a bad frame).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event


class ProtocolError(Exception):
    """A frame that is not a valid Wyoming event, or one over the size limits."""


class FrameTimeout(ProtocolError):
    """A frame was started but not finished within the read timeout (a slow client)."""


async def read_event(
    reader: asyncio.StreamReader,
    first: bytes,
    *,
    max_data: int,
    max_payload: int,
    timeout: float | None = None,
) -> Event | None:
    """The event whose first byte ``first`` has just arrived (the caller waits for it
    with the idle timeout, which may cancel that wait without losing a byte); the rest
    must come within ``timeout`` seconds. ``None`` at EOF; raises :class:`ProtocolError`
    for a bad frame and :class:`FrameTimeout` for one sent too slowly."""
    try:
        async with asyncio.timeout(timeout):
            return await _read_rest(reader, first, max_data, max_payload)
    except TimeoutError as err:
        raise FrameTimeout(f"an event took longer than {timeout:g} s to arrive") from err


async def _read_rest(
    reader: asyncio.StreamReader, first: bytes, max_data: int, max_payload: int
) -> Event | None:
    if not first:
        return None
    try:
        line = first if first.endswith(b"\n") else first + await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as err:  # a header over the 64 KiB limit
        raise ProtocolError("event header too long") from err
    if not line.endswith(b"\n"):
        return None  # EOF in the middle of a header: the peer is gone
    header = _json_object(line, "header")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise ProtocolError("event header has no type")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError("event data is not an object")
    data_length = _length(header, "data_length", max_data)
    payload_length = _length(header, "payload_length", max_payload)
    try:
        if data_length:
            data.update(_json_object(await reader.readexactly(data_length), "data"))
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None  # closed mid-event
    return Event(type=event_type, data=data, payload=payload)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"event {what} is not valid JSON") from err
    if not isinstance(value, dict):
        raise ProtocolError(f"event {what} is not a JSON object")
    return value


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{key} must be a non-negative integer")
    if value > limit:
        raise ProtocolError(f"{key} {value} is over the limit of {limit} bytes")
    return value
