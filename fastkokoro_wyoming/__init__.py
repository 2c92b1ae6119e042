"""fastkokoro-wyoming: Kokoro TTS for Home Assistant (Wyoming) and OpenAI clients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .python_api import FastKokoro


def __getattr__(name: str) -> Any:
    # Lazy: `import fastkokoro_wyoming` stays cheap for the CLI and the front ends.
    if name == "FastKokoro":
        from .python_api import FastKokoro

        return FastKokoro
    raise AttributeError(name)


__all__ = ["FastKokoro", "__version__"]
