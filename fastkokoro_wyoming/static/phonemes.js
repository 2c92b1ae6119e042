// The "Phonemes" view of the audition page: what a text becomes (POST /dev/phonemize,
// the lexicon and inline [word](/phonemes/) applied), edited by hand, then heard
// (POST /dev/generate_from_phonemes, wav, played from a Blob URL). The page's own
// fetch (the API key), voice and speed come in from app.js, so both views agree.

// The language of the chosen voice: its optgroup carries the locale (app.js fillVoices).
function voiceLanguage(select) {
  const option = select.selectedOptions[0];
  return (option && option.parentElement && option.parentElement.dataset.language) || "a";
}

export function initPhonemes({ $, api, voiceSpec, showError, setStatus }) {
  const phonemes = $("phonemes");
  const player = $("phoneme-player");
  let url = null;

  async function show() {
    showError("");
    const text = $("text").value.trim();
    if (!text) {
      showError("Type some text first.");
      $("text").focus();
      return;
    }
    const language = voiceLanguage($("voice-a"));
    setStatus("Phonemizing…");
    try {
      const response = await api("/dev/phonemize", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text, language }),
      });
      const body = await response.json();
      phonemes.value = body.phonemes;
      $("phoneme-count").textContent = `${body.tokens.length} tokens`;
      setStatus(`Phonemes for ${language}: edit them, then Speak phonemes.`);
    } catch (err) {
      showError(err.message);
      setStatus("");
    }
  }

  async function hear() {
    showError("");
    const value = phonemes.value.trim();
    if (!value) {
      showError("Show the phonemes of a text first, or type some.");
      phonemes.focus();
      return;
    }
    const voice = voiceSpec();
    setStatus(`Speaking the phonemes with ${voice}…`);
    try {
      const response = await api("/dev/generate_from_phonemes", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          phonemes: value,
          voice,
          speed: Number($("speed").value),
          response_format: "wav",
          stream: false,
        }),
      });
      const blob = await response.blob();
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      player.src = url;
      await player.play().catch(() => {}); // autoplay may be refused: the controls remain
      setStatus(`Played ${blob.size} bytes of phonemes with ${voice}.`);
      document.body.dataset.phonemesPlayed = String(blob.size);
    } catch (err) {
      showError(err.message);
      setStatus("");
    }
  }

  $("show-phonemes").addEventListener("click", show);
  $("speak-phonemes").addEventListener("click", hear);
}
