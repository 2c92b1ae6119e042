"""fastkokoro-wyoming: Kokoro TTS for Home Assistant (Wyoming) and OpenAI clients."""

__version__ = "0.1.0"
