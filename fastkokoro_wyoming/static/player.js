// Playback for the audition page: the NDJSON stream of /dev/captioned_speech read line by
// line, its mp3 chunks appended to a MediaSource on the <audio> element (so playback starts
// with the first chunk), and the word under the element's currentTime highlighted.

export const MIME = "audio/mpeg";
const GAP_S = 0.25; // after a word ends, keep it lit this long unless the next one starts

// One JSON object per line, as the lines arrive (a line may span network chunks).
export async function* ndjsonLines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    pending += decoder.decode(value || new Uint8Array(), { stream: !done });
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) if (line.trim()) yield JSON.parse(line);
    if (done) break;
  }
  if (pending.trim()) yield JSON.parse(pending);
}

export function base64Bytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// The words received so far, as spans in `container`; `show(t)` lights the one being
// spoken at t seconds of the audio (none in a pause).
export class ReadAlong {
  constructor(container) {
    this.container = container;
    this.reset();
  }

  reset() {
    this.words = []; // {word, start_time, end_time}, in order
    this.spans = [];
    this.current = -1;
    this.container.replaceChildren();
  }

  add(timestamps) {
    for (const w of timestamps) {
      const span = document.createElement("span");
      span.className = "word";
      span.dataset.index = String(this.words.length);
      span.textContent = w.word;
      this.container.append(span, " ");
      this.words.push(w);
      this.spans.push(span);
    }
  }

  // the last word that started at or before t, unless it ended well before t
  indexAt(t) {
    let lo = 0;
    let hi = this.words.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.words[mid].start_time <= t) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found >= 0 && t > this.words[found].end_time + GAP_S) return -1;
    return found;
  }

  show(t) {
    const index = this.indexAt(t);
    if (index === this.current) return;
    if (this.current >= 0) {
      this.spans[this.current].classList.remove("current");
      this.spans[this.current].removeAttribute("aria-current");
    }
    this.current = index;
    if (index >= 0) {
      const span = this.spans[index];
      span.classList.add("current");
      span.setAttribute("aria-current", "true");
      span.scrollIntoView({ block: "nearest" });
    }
  }
}

// Drive the highlight from the element's clock: every frame while it plays, and on seeks.
export function follow(player, readAlong) {
  const tick = () => {
    readAlong.show(player.currentTime);
    if (!player.paused && !player.ended) requestAnimationFrame(tick);
  };
  player.addEventListener("play", () => requestAnimationFrame(tick));
  for (const event of ["timeupdate", "seeked", "ended"]) {
    player.addEventListener(event, () => readAlong.show(player.currentTime));
  }
}

// mp3 chunks into a MediaSource on `player`, queued (a SourceBuffer takes one append at a
// time); where MediaSource has no mp3, the whole Blob plays once it has arrived.
export class StreamingAudio {
  constructor(player) {
    this.player = player;
    this.queue = [];
    this.ended = false;
    this.stopped = false;
    this.started = false;
    this.buffer = null;
    this.source = null;
    this.url = null;
    if (window.MediaSource && MediaSource.isTypeSupported(MIME)) {
      this.source = new MediaSource();
      this.url = URL.createObjectURL(this.source);
      this.opened = new Promise((resolve) =>
        this.source.addEventListener("sourceopen", resolve, { once: true }),
      );
      player.src = this.url;
    }
  }

  async push(bytes) {
    if (!this.source) return;
    this.queue.push(bytes);
    await this.opened;
    if (!this.buffer) {
      this.buffer = this.source.addSourceBuffer(MIME);
      this.buffer.mode = "sequence";
      this.buffer.addEventListener("updateend", () => this.pump());
    }
    this.pump();
  }

  pump() {
    if (!this.buffer || this.buffer.updating || this.source.readyState !== "open") return;
    if (this.queue.length) {
      this.buffer.appendBuffer(this.queue.shift());
      if (!this.started && !this.stopped) {
        this.started = true; // once: a listener who pauses stays paused
        this.player.play().catch(() => {});
      }
    } else if (this.ended) {
      this.source.endOfStream();
    }
  }

  // all bytes received: end the MediaSource once its queue drains, or play the Blob
  finish(blob) {
    this.ended = true;
    if (this.source) {
      this.pump();
    } else {
      this.url = URL.createObjectURL(blob);
      this.player.src = this.url;
      this.player.play().catch(() => {});
    }
  }

  close() {
    this.stopped = true;
    this.player.pause();
    if (this.url) URL.revokeObjectURL(this.url);
  }
}
