// The voice-audition page: voices from the live catalog, a two-voice blend, speed, and
// Speak, which streams POST /dev/captioned_speech (NDJSON: base64 mp3 + word timings per
// chunk) to the player (player.js); the Phonemes view is phonemes.js. No dependencies, no
// build step: the server ships these files as they are (ES modules, same origin).
import { initPhonemes } from "./phonemes.js";
import { MIME, ReadAlong, StreamingAudio, base64Bytes, follow, ndjsonLines } from "./player.js";

const KEY_NAME = "fastkokoro.apiKey";
const HEALTH_EVERY_MS = 5000;
const $ = (id) => document.getElementById(id);

// A request the server refused: its OpenAI-style message, shown to the user as it is.
class ServerError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// --- API key: asked for only when a request answers 401, kept in this browser only ----

function storedKey() {
  return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || "";
}

function saveKey(key, remember) {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
  (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

function askForKey() {
  const form = $("key-form");
  const wasHidden = form.hidden;
  form.hidden = false;
  if (wasHidden) $("api-key").focus();
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) {
    // not JSON: fall through to the status line
  }
  return `The server answered ${response.status} ${response.statusText}.`.trim();
}

// fetch with the key (when there is one); a refusal becomes a ServerError with the
// server's own message, and a 401 also opens the key form.
async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = storedKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(path, { ...init, headers });
  if (response.ok) return response;
  const message = await errorMessage(response);
  if (response.status === 401) askForKey();
  throw new ServerError(response.status, message);
}

// --- status, errors, health -----------------------------------------------------------

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  $("error").textContent = text;
}

function setHealth(state, text) {
  const el = $("health");
  if (el.textContent !== text) el.textContent = text; // announce changes only
  el.dataset.state = state;
}

async function pollHealth() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (response.ok && body.model === "unloaded") {
      setHealth("ok", "Server: ready (model unloaded while idle; the next request reloads it)");
    } else if (response.ok) {
      setHealth("ok", "Server: ready (model loaded)");
    } else {
      setHealth("loading", "Server: loading the model…");
    }
  } catch (_) {
    setHealth("down", "Server: unreachable");
  }
  setTimeout(pollHealth, HEALTH_EVERY_MS);
}

// --- voices -----------------------------------------------------------------------------

function languageName(locale) {
  try {
    const name = new Intl.DisplayNames(["en"], { type: "language" }).of(locale);
    return name && name !== locale ? `${name} (${locale})` : locale;
  } catch (_) {
    return locale;
  }
}

function voiceLabel(v) {
  if (v.preset) return `${v.name} (preset: ${v.preset.voice})`;
  return v.gender ? `${v.name} (${v.gender})` : v.name;
}

// presets: a named voice with its own speed and volume (engine.voices.presets); they are
// not blended, so the second list leaves them out
function fillVoices(select, groups, keep, presets = true) {
  for (const [locale, all] of groups) {
    const voices = presets ? all : all.filter((v) => !v.preset);
    if (!voices.length) continue;
    const group = document.createElement("optgroup");
    group.label = languageName(locale);
    group.dataset.language = locale;
    for (const v of voices) group.append(new Option(voiceLabel(v), v.id));
    select.append(group);
  }
  if (keep) select.value = keep;
}

async function loadVoices() {
  const response = await api("/v1/audio/voices");
  const { voices } = await response.json();
  const groups = new Map();
  for (const v of voices) {
    if (!groups.has(v.language)) groups.set(v.language, []);
    groups.get(v.language).push(v);
  }
  const a = $("voice-a");
  const b = $("voice-b");
  const known = (id) => voices.some((v) => v.id === id);
  // a reload (after the key was entered) keeps what was chosen
  const keepA = known(a.value) ? a.value : known("af_heart") ? "af_heart" : voices[0]?.id;
  const keepB = known(b.value) ? b.value : "";
  a.replaceChildren();
  b.replaceChildren(new Option("(no blend)", ""));
  fillVoices(a, groups, keepA);
  fillVoices(b, groups, keepB, false);
  presetSpeeds = new Map(voices.filter((v) => v.preset?.speed).map((v) => [v.id, v.preset.speed]));
  document.body.dataset.voices = String(voices.length);
  updateVoiceSpec();
}

// What goes in "voice": one name, or Kokoro-FastAPI's blend syntax a(w)+b(w).
function voiceSpec() {
  const a = $("voice-a").value;
  const b = $("voice-b").value;
  const mix = Number($("mix").value);
  if (!b || b === a || mix >= 100) return a;
  if (mix <= 0) return b;
  return `${a}(${mix})+${b}(${100 - mix})`;
}

let presetSpeeds = new Map(); // preset id -> its speed, shown on the speed slider

function showPresetSpeed() {
  const speed = presetSpeeds.get($("voice-a").value);
  if (speed === undefined) return;
  $("speed").value = String(speed);
  $("speed-out").textContent = `${Number(speed).toFixed(2)}×`;
}

function updateVoiceSpec() {
  const blended = Boolean($("voice-b").value);
  const mix = $("mix");
  mix.disabled = !blended;
  const share = blended ? Number(mix.value) : 100;
  const text = blended ? `${share} % / ${100 - share} %` : "100 %";
  $("mix-out").textContent = text;
  mix.setAttribute("aria-valuetext", blended ? `${share} percent first voice` : "no blend");
  $("voice-spec-value").textContent = voiceSpec();
}

// --- Speak ------------------------------------------------------------------------------

let current = null; // {controller, audio} of the request being played
let readAlong = null; // the transcript, set up by init()

function setDownload(blob, voice) {
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  if (!blob) {
    link.hidden = true;
    link.removeAttribute("href");
    return;
  }
  link.href = URL.createObjectURL(blob);
  link.download = `kokoro-${voice.replace(/[^A-Za-z0-9_.-]+/g, "_")}.mp3`;
  link.hidden = false;
}

function stop() {
  if (!current) return;
  current.controller.abort();
  current.audio.close();
  current = null;
  $("stop").disabled = true;
}

async function speak() {
  stop();
  showError("");
  setDownload(null);
  readAlong.reset();
  const text = $("text").value.trim();
  if (!text) {
    showError("Type some text to speak.");
    $("text").focus();
    return;
  }
  const voice = voiceSpec();
  const controller = new AbortController();
  const audio = new StreamingAudio($("player"));
  const mine = { controller, audio };
  current = mine;
  $("stop").disabled = false;
  setStatus(`Speaking with ${voice}…`);
  const parts = [];
  try {
    const response = await api("/dev/captioned_speech", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
      body: JSON.stringify({
        model: "kokoro",
        input: text,
        voice,
        response_format: "mp3",
        speed: Number($("speed").value),
        stream: true,
      }),
      signal: controller.signal,
    });
    for await (const line of ndjsonLines(response)) {
      if (line.error) throw new ServerError(500, line.error.message || "Synthesis failed.");
      if (line.audio) {
        const bytes = base64Bytes(line.audio);
        parts.push(bytes);
        await audio.push(bytes);
      }
      if (line.timestamps && line.timestamps.length) readAlong.add(line.timestamps);
    }
    const blob = new Blob(parts, { type: MIME });
    audio.finish(blob);
    setDownload(blob, voice);
    setStatus(`Received ${readAlong.words.length} words with ${voice}.`);
  } catch (err) {
    if (err.name === "AbortError") {
      setStatus("Stopped.");
    } else {
      showError(err.message);
      setStatus("");
      if (current === mine) stop();
    }
  } finally {
    if (current === mine) $("stop").disabled = true;
  }
}

// --- wiring -----------------------------------------------------------------------------

function startVoices() {
  loadVoices().then(
    () => setStatus(""),
    (err) => showError(`Could not load the voices: ${err.message}`),
  );
}

function init() {
  $("speak-form").addEventListener("submit", (event) => {
    event.preventDefault();
    speak();
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("speak-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => {
    stop();
    setStatus("Stopped.");
  });
  for (const id of ["voice-a", "voice-b", "mix"]) {
    $(id).addEventListener("input", updateVoiceSpec);
  }
  $("voice-a").addEventListener("input", showPresetSpeed); // a preset speaks at its speed
  $("speed").addEventListener("input", () => {
    $("speed-out").textContent = `${Number($("speed").value).toFixed(2)}×`;
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    saveKey(key, $("remember-key").checked);
    $("key-form").hidden = true;
    showError("");
    setStatus("API key saved in this browser.");
    startVoices();
  });
  readAlong = new ReadAlong($("transcript"));
  follow($("player"), readAlong);
  $("player").addEventListener("error", () => {
    const err = $("player").error;
    if (current && err) showError(`The browser could not play the audio: ${err.message || err.code}`);
  });
  initPhonemes({ $, api, voiceSpec, showError, setStatus });
  pollHealth();
  startVoices();
}

init();
