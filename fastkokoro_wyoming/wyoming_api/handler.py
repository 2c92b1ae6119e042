"""Wyoming TTS front end (Home Assistant): one handler per connection over the shared engine.

The handler only parses events and queues work; a per-connection worker task runs the
requests in order and writes audio. So `describe` is answered at once even
mid-synthesis (HA gives it 1 s), and a client that disconnects gets its synthesis
cancelled straight away. A stream (synthesize-start ... synthesize-stop) is one such
request, a :class:`~.stream.StreamReply` that synthesizes its sentences ahead while
the text still arrives. Every request ends with the event HA waits for (`audio-stop`,
or `synthesize-stopped` in a stream), also after an `error`: HA ignores `error` and
would otherwise hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from wyoming.audio import AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .. import __version__
from ..engine.errors import EmptyText, EngineError
from ..engine.model.voices import Voice
from ..engine.protocol import SpeechEngine
from ..engine.types import SynthesisRequest, VoiceInfo
from ..peers import READ_TIMEOUT, PeerLimits, peer_host
from .audio_out import AudioOut
from .reader import FrameTimeout, ProtocolError, read_event
from .ssml_stream import is_ssml, ssml_stream_text
from .stream import StreamReply

if TYPE_CHECKING:
    from ..config import WyomingConfig

_LOGGER = logging.getLogger(__name__)

_ATTRIBUTION = Attribution(name="Kokoro (hexgrad)", url="https://github.com/hexgrad/kokoro")


def describe_voice(voice: VoiceInfo) -> str:
    """What HA shows in its voice picker: "af_heart" -> "Heart (en-US, female)"; a preset
    says what it is: "grandma" -> "grandma (preset: af_heart, 0.85x, en-US)"."""
    if voice.preset is not None:
        speed = f", {voice.speed:g}x" if voice.speed is not None else ""
        return f"{voice.name} (preset: {voice.preset}{speed}, {voice.locale})"
    base = voice.name.split("_", 1)[-1].replace("_", " ").title()
    return f"{base} ({voice.locale}, {voice.gender})"


def build_info(engine: SpeechEngine, settings: WyomingConfig) -> Info:
    """The `info` answer; HA caches it per config entry, so build it once at startup."""
    voices = [
        TtsVoice(
            name=voice.name,
            description=describe_voice(voice),
            attribution=_ATTRIBUTION,
            installed=True,
            version=__version__,
            languages=[voice.locale],
        )
        for voice in engine.voices()
    ]
    program = TtsProgram(
        name=settings.program_name or "kokoro",
        description="Kokoro-82M text to speech (fastkokoro-wyoming)",
        attribution=_ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program])


def _normalized(event: Event) -> Event:
    """Tolerate null data, a missing text and a bare-string voice (wyoming-bench sends one)."""
    data = dict(event.data) if isinstance(event.data, dict) else {}
    voice = data.get("voice")
    if isinstance(voice, str):
        data["voice"] = {"name": voice}
    elif not isinstance(voice, dict):
        data.pop("voice", None)
    if not isinstance(data.get("text"), str):
        data["text"] = ""
    return Event(type=event.type, data=data, payload=event.payload)


class WyomingHandler(AsyncEventHandler):
    """One client connection; build with ``partial(WyomingHandler, engine, settings, info,
    limits=...)`` (``limits``: the listener's connection caps, shared by its handlers)."""

    def __init__(
        self,
        engine: SpeechEngine,
        settings: WyomingConfig,
        info: Info,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        limits: PeerLimits | None = None,
    ) -> None:
        super().__init__(reader, writer)
        self._engine = engine
        self._settings = settings
        self._limits = limits or PeerLimits(
            "wyoming", settings.max_connections, settings.max_connections_per_peer
        )
        self._peer = peer_host(writer.get_extra_info("peername"))
        self._info_event = info.event()
        self._chunk_samples = max(1, int(settings.samples_per_chunk))
        self._stream: StreamReply | None = None  # the open stream (until synthesize-stop)
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def handle_event(self, event: Event) -> bool:
        """Dispatch one event; never returns False for an event we merely don't know."""
        event = _normalized(event)
        try:
            await self._dispatch(event)
        except ConnectionError:
            return False
        except Exception:
            _LOGGER.exception("Failed to handle %s event", event.type)
        return True

    async def run(self) -> None:
        """Read events with limits and timeouts (the base class trusts the client): the
        connection caps, an idle timeout between events, and a short read timeout once
        an event has started (a client that sends a frame a byte at a time is cut)."""
        self._is_running = True
        refused = self._limits.open(self._peer)
        if refused is not None:
            detail = self._limits.refuse_detail(refused, self._peer)
            self._limits.cut(self._peer, refused, detail)
            await self._reject(detail, "too_many_connections")
            self.writer.close()
            return
        try:
            await self._read_events()
        except ConnectionError as err:  # the client hung up (a write failed, or a reset)
            _LOGGER.debug("Client went away: %s", err)
        finally:
            self._limits.close(self._peer)
            await self.disconnect()
            self.writer.close()

    async def _read_events(self) -> None:
        idle = self._settings.idle_timeout_s
        while self._is_running:
            try:
                # only the wait for an event's first byte: cancelling it loses nothing
                first = await asyncio.wait_for(self.reader.read(1), timeout=idle or None)
            except TimeoutError:
                if self._worker is not None and not self._worker.done():
                    continue  # synthesizing: a quiet client is not an idle one
                _LOGGER.debug("Closing a connection idle for %s s", idle)
                return
            try:
                event = await read_event(
                    self.reader,
                    first,
                    max_data=self._settings.max_event_bytes,
                    max_payload=self._settings.max_event_bytes,
                    timeout=self._settings.read_timeout_s,
                )
            except FrameTimeout as err:
                self._limits.cut(self._peer, READ_TIMEOUT, f"{err} (wyoming.read_timeout_s)")
                await self._reject(str(err), "read_timeout")
                return
            except ProtocolError as err:
                _LOGGER.info("Closing a connection after a bad event: %s", err)
                await self._reject(str(err))
                return
            if event is None or not await self.handle_event(event):
                return

    async def _reject(self, reason: str, code: str = "bad_event") -> None:
        """Tell the client why before hanging up; ends any request it was waiting on."""
        try:
            await self.write_event(Error(text=reason, code=code).event())
            if self._stream is not None:
                await self.write_event(SynthesizeStopped().event())
        except (ConnectionError, RuntimeError):
            pass

    async def disconnect(self) -> None:
        """Client gone (or server stopping): stop its synthesis now, not when it finishes."""
        if self._stream is not None:
            self._stream.cancel()  # its pieces, even if the worker has not reached it
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.wait([worker])

    async def _dispatch(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(self._info_event)
        elif Synthesize.is_type(event.type):
            if self._stream is not None:
                _LOGGER.debug("Ignoring synthesize inside a stream (compatibility copy)")
            else:
                self._submit(partial(self._synthesize, Synthesize.from_event(event)))
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self._start_stream(start.voice, start.text_format)
        elif SynthesizeChunk.is_type(event.type):
            stream = self._stream
            if stream is None:
                _LOGGER.debug("Ignoring synthesize-chunk outside a stream")
                return
            stream.add(SynthesizeChunk.from_event(event).text)
        elif SynthesizeStop.is_type(event.type):
            self._end_stream()
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        else:
            _LOGGER.debug("Ignoring %s event", event.type)

    def _resolve_voice(self, voice: SynthesizeVoice | None) -> Voice:
        """The engine's default-voice rule: name > language's default > configured default
        (HA sends neither a language nor, unless the user picked one, a voice). Speakers
        don't exist in Kokoro."""
        return self._engine.voice_for(
            voice.name if voice is not None and voice.name else None,
            voice.language if voice is not None and voice.language else None,
        )

    def _request(self, text: str, voice: str | None, *, ssml: bool = False) -> SynthesisRequest:
        """The engine request for ``text`` (both paths: one place to adapt text);
        ``ssml``: text_format "ssml", parsed and checked by the engine like HTTP's."""
        return SynthesisRequest(text=text, voice=voice, ssml=ssml)

    def _start_stream(self, voice: SynthesizeVoice | None, text_format: object = None) -> None:
        if self._stream is not None:
            _LOGGER.warning("synthesize-start inside a stream; ending the previous stream")
            self._end_stream()
        name: str | None = None
        lang: str | None = None
        error: EngineError | None = None
        try:
            resolved = self._resolve_voice(voice)
            name, lang = resolved.name, resolved.lang
        except EngineError as err:
            error = err
        ssml = is_ssml(text_format)
        out = AudioOut(self.write_event, self._chunk_samples)
        self._stream = StreamReply(
            self._engine,
            self._settings,
            out,
            partial(self._request, ssml=ssml),
            voice=name,
            lang=lang,
            error=error,
            text=ssml_stream_text(lang) if ssml else None,
        )
        self._submit(self._stream.run)

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            # A stop without a start: still answer, so the client isn't left waiting.
            self._submit(partial(self.write_event, SynthesizeStopped().event()))
            return
        stream.finish()

    def _submit(self, job: Callable[[], Awaitable[None]]) -> None:
        """Queue work for this connection's worker; jobs run strictly in order."""
        self._jobs.put_nowait(job)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="wyoming synthesis")

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except ConnectionError as err:
                _LOGGER.debug("Client went away: %s", err)
                self.writer.close()  # the read loop then sees EOF and calls disconnect()
                return
            except Exception:
                _LOGGER.exception("Wyoming job failed")

    async def _synthesize(self, request: Synthesize) -> None:
        """Non-streaming request: [audio-start, audio-chunk*], exactly one audio-stop."""
        out = AudioOut(self.write_event, self._chunk_samples)
        try:
            voice = self._resolve_voice(request.voice).name
            _LOGGER.debug("synthesize: voice=%s, %d chars", voice, len(request.text))
            ssml = is_ssml(request.text_format)
            prepared = self._engine.prepare(self._request(request.text, voice, ssml=ssml))
            await out.start()  # after the validation: a refused request has no audio
            framer = out.framer()
            # interactive: HA does not retry, so it is queued (ahead of bulk HTTP work)
            # while the wait stays under engine.limits.interactive_max_wait_s
            audio = self._engine.synthesize(prepared, interactive=True)
            async with contextlib.aclosing(audio):  # closing drops queued work
                async for samples in audio:
                    await out.samples(framer, samples)
            await out.flush(framer)
        except Exception as err:
            await out.report(err)
        if not out.failed and out.frames == 0:
            await out.error("The text produced no audio", EmptyText.code)
        await self.write_event(AudioStop().event())
