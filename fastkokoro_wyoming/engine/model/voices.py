"""Voice style vectors: loading, blending, and the row Kokoro picks per length.

A Kokoro voice is a float32 ``[510, 256]`` table: row ``n`` is the style for an
utterance of ``n`` phoneme ids. Voices come from an ``.npz`` (onnx-community /
kokoro-onnx layout, arrays ``[510, 256]`` or ``[510, 1, 256]``) or a folder of
``.bin``/``.npy`` files (kokoro-js / onnx-community ``voices/``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, UnknownVoice
from ..text.languages import LanguageTable
from ..types import VoiceInfo
from .presets import Preset

STYLE_ROWS = 510
STYLE_DIM = 256

# One part of a blend: `af_bella(2)` (Kokoro-FastAPI), `af_bella:0.7` or a bare name.
_PART = re.compile(
    r"^(?P<name>[A-Za-z0-9_\-.]+?)(?:\((?P<w1>[0-9]*\.?[0-9]+)\)|:(?P<w2>[0-9]*\.?[0-9]+))?$"
)
_SEPARATOR = re.compile(r"([+,-])(?=\s*[A-Za-z])")
_LEADING_NAME = re.compile(r"^(\s*)([A-Za-z0-9_]+)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class BlendPart:
    """One voice of a spec and its weight (None: not written, i.e. 1)."""

    name: str
    weight: float | None
    text: str  # the part as written, for error messages


def parse_blend(spec: str) -> list[BlendPart]:
    """``af_bella(2)+af_sky(1)`` or ``af_bella:0.7+af_sky:0.3`` -> its parts, in order.
    A comma separates parts like ``+`` (``af_bella:0.7,af_sky:0.3``, natural in YAML).

    The one reading of the blend syntax: the engine resolves with it, the HTTP layer
    maps OpenAI names through it and Wyoming reads a blend's language from it. Names
    are not checked here; a part that is not ``name[(w)|:w]`` keeps ``weight=None`` and
    ``name=""`` so the caller can name it in its error.
    """
    parts = []
    for raw in spec.replace(",", "+").split("+"):
        text = raw.strip().replace(" ", "")
        m = _PART.match(text)
        if m is None:
            parts.append(BlendPart("", None, text))
            continue
        w = m["w1"] or m["w2"]
        parts.append(BlendPart(m["name"], float(w) if w else None, text))
    return parts


def rename_voices(spec: str, mapping: Mapping[str, str]) -> str:
    """Replace each part's name through ``mapping`` (keys lower-case); weights and
    separators stay as written. Used for OpenAI's voice names inside blends
    (``alloy(2)+nova(1)``). Parts split at ``+`` or ``-`` only where a name follows,
    so a written weight such as ``:-0.3`` survives (and is refused later, by name)."""
    pieces = _SEPARATOR.split(spec.strip())
    for i in range(0, len(pieces), 2):
        m = _LEADING_NAME.match(pieces[i])
        if m:
            lead, name, rest = m.groups()
            pieces[i] = lead + mapping.get(name.lower(), name) + rest
    return "".join(pieces)


def first_voice(spec: str) -> str:
    """The name of a blend's first voice (its language is the blend's)."""
    parts = parse_blend(spec)
    return parts[0].name if parts else ""


@dataclass(frozen=True)
class Voice:
    """A resolved voice (single, blend or preset): its style table and language."""

    name: str  # as asked for: a voice, a blend, or a preset's name
    lang: str  # one-letter code of the (first) component, or the preset's language
    styles: np.ndarray  # float32 [510, 256]
    source: str = ""  # a preset's voice or blend ("": ``name`` itself)
    speed: float | None = None  # a preset's speed
    volume_db: float = 0.0  # a preset's volume

    @property
    def blend(self) -> str:
        """The voice or blend the styles are: what loudness and norm priors are kept by."""
        return self.source or self.name

    def style_for(self, n_ids: int) -> np.ndarray:
        """Style row for an utterance of ``n_ids`` ids, clamped (row 510 does not exist)."""
        row = min(max(n_ids - 1, 0), STYLE_ROWS - 1)
        return self.styles[row : row + 1]


class VoiceStore:
    """All installed voices, by name. Blends are built on request and cached.

    ``infos`` is the catalog both front ends advertise: only voices of languages this
    install can speak (checked once, here, at startup). The others still resolve, so a
    request naming one gets the G2P's ``language_unavailable`` error naming the extra to
    install, not a puzzling "unknown voice".
    """

    def __init__(self, styles: dict[str, np.ndarray], languages: LanguageTable) -> None:
        self._styles = styles
        self._languages = languages
        self._blends: dict[str, Voice] = {}
        self._all: list[VoiceInfo] = []  # every Kokoro-named voice, speakable or not
        for name in sorted(styles):
            lang = languages.for_voice(name)
            if lang is None:
                continue  # not a Kokoro name: usable, but not listed per language
            gender = "female" if name[1] == "f" else "male"
            self._all.append(VoiceInfo(name, lang.code, lang.locale, gender))
        self._speakable = {lg.code for lg in languages.languages if languages.speakable(lg)}
        self.infos: list[VoiceInfo] = [v for v in self._all if v.lang in self._speakable]
        self._presets: dict[str, Preset] = {}

    def add_presets(self, presets: Mapping[str, Preset]) -> None:
        """Presets (checked: engine/model/presets.py) become voices: resolvable by name and
        listed, under their language, after the installed voices."""
        self._presets = dict(presets)
        for p in presets.values():
            voice = self.resolve(p.name)
            lang = self._languages.resolve(voice.lang)
            gender = "male" if p.voice.strip()[1:2] == "m" else "female"
            info = VoiceInfo(p.name, lang.code, lang.locale, gender, p.voice, p.speed, p.volume_db)
            if lang.code in self._speakable:
                self.infos.append(info)

    @property
    def presets(self) -> Mapping[str, Preset]:
        return self._presets

    @classmethod
    def load(cls, path: Path, languages: LanguageTable) -> VoiceStore:
        return cls(load_style_tables(path), languages)

    @property
    def names(self) -> list[str]:
        return sorted(self._styles)

    def __contains__(self, name: str) -> bool:
        return name in self._styles

    def default_for(self, lang_code: str, preferred: str | None = None) -> str | None:
        if preferred and preferred in self._styles:
            pl = self._languages.for_voice(preferred)
            if pl is not None and pl.code == lang_code:
                return preferred
        # all voices, not just the catalog: `lang=ja` without the extra should reach the
        # G2P's language_unavailable error, not "no installed voice speaks 'ja'"
        for info in self._all:  # sorted: af_heart would lose to af_alloy, so prefer hearts
            if info.lang == lang_code and info.name.endswith("_heart"):
                return info.name
        for info in self._all:
            if info.lang == lang_code:
                return info.name
        return None

    def resolve(self, spec: str) -> Voice:
        """A voice name or blend spec -> :class:`Voice`; bad parts raise UnknownVoice."""
        spec = spec.strip()
        if spec in self._styles:
            return self._voice(spec, self._styles[spec])
        preset = self._presets.get(spec)
        if preset is not None:
            base = self.resolve(preset.voice)
            return replace(
                base,
                name=preset.name,
                lang=preset.lang or base.lang,
                source=base.name,
                speed=preset.speed,
                volume_db=preset.volume_db,
            )
        if spec in self._blends:
            return self._blends[spec]
        parts = parse_blend(spec)
        if len(parts) < 2 and not parts[0].name:
            raise UnknownVoice(self._unknown_message(spec))
        names: list[str] = []
        weights: list[float] = []
        for part in parts:
            if not part.name:
                raise UnknownVoice(f"bad voice blend part {part.text!r} in {spec!r}")
            name = part.name
            if name not in self._styles:
                raise UnknownVoice(self._unknown_message(name, spec))
            weight = 1.0 if part.weight is None else part.weight
            if weight <= 0:
                raise UnknownVoice(f"voice weight for {name!r} must be > 0 in {spec!r}")
            names.append(name)
            weights.append(weight)
        w = np.asarray(weights, dtype=np.float32) / float(sum(weights))
        table = sum(wi * self._styles[n] for wi, n in zip(w, names, strict=True))
        voice = self._voice(spec, np.asarray(table, dtype=np.float32), lang_from=names[0])
        if len(self._blends) < 256:  # blends are cheap to rebuild; don't grow without bound
            self._blends[spec] = voice
        return voice

    def _voice(self, name: str, table: np.ndarray, lang_from: str | None = None) -> Voice:
        lang = self._languages.for_voice(lang_from or name)
        return Voice(name, lang.code if lang else "a", table)

    def _unknown_message(self, name: str, spec: str | None = None) -> str:
        where = f" in {spec!r}" if spec and spec != name else ""
        close = [n for n in self.names if n.split("_")[-1] == name.split("_")[-1]]
        if not close:  # a typo: names one or two letters off
            close = difflib.get_close_matches(name, [*self.names, *self._presets], 3, 0.75)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        # what can be asked for: the catalog, plus voices without a Kokoro name (usable,
        # unlisted); not the installed voices of languages this install cannot speak
        offered = len(self.infos) + len(self._styles) - len(self._all)
        return f"unknown voice {name!r}{where}{hint} ({offered} voices available)"


def load_style_tables(path: Path) -> dict[str, np.ndarray]:
    """Read every voice at ``path`` (npz file or folder) as float32 ``[510, 256]``."""
    path = Path(path)
    tables: dict[str, np.ndarray] = {}
    if path.is_file() and path.suffix == ".npz":
        index = _voices_txt(path.with_name("voices.txt"))
        with np.load(path) as npz:
            for key in npz.files:
                name = index.get(str(key), str(key))
                tables[name] = _check_shape(np.asarray(npz[key], dtype=np.float32), path, name)
    elif path.is_dir():
        for f in sorted(path.iterdir()):
            if f.suffix == ".bin":
                arr = _mapped(f)
            elif f.suffix == ".npy":
                arr = np.load(f, mmap_mode="r")
                arr = arr if arr.dtype == np.float32 else arr.astype(np.float32)
            else:
                continue
            tables[f.stem] = _check_shape(arr, f, f.stem)
    else:
        raise ConfigError(
            f"engine.model.voices: {path} is neither an .npz file nor a folder of .bin/.npy"
        )
    if not tables:
        raise ConfigError(f"engine.model.voices: no voices found in {path}")
    return tables


def _mapped(f: Path) -> np.ndarray:
    """A read-only map of a raw float32 table: a request reads one row of it, so 54 voices
    cost RSS only for the pages used (the whole tables would be ~28 MB)."""
    try:
        return np.memmap(f, dtype=np.float32, mode="r")
    except ValueError:  # empty, or not a whole number of floats: the shape check reports it
        return np.fromfile(f, dtype=np.float32)


def _check_shape(arr: np.ndarray, path: Path, name: str) -> np.ndarray:
    if arr.size != STYLE_ROWS * STYLE_DIM:
        raise ConfigError(
            f"engine.model.voices: {name!r} in {path} has {arr.size} values, expected "
            f"{STYLE_ROWS}x{STYLE_DIM} float32 (shape {tuple(arr.shape)})"
        )
    return arr.reshape(STYLE_ROWS, STYLE_DIM)


def _voices_txt(path: Path) -> dict[str, str]:
    """Optional ``voices.txt`` beside an npz: ``index=name`` lines naming ``arr_<index>``."""
    if not path.is_file():
        return {}
    index: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, name = line.strip().partition("=")
        if sep and name:
            index[f"arr_{key}" if key.isdigit() else key] = name
    return index
