"""Serving layer: how requests share the model.

A request's plan (:mod:`.plan`), the earliest-deadline-first worker pool
(:mod:`.scheduler`), who is let in (:mod:`.admission`), one request's stream of audio
(:mod:`.stream`), how a segment becomes audio (:mod:`.renders`), PCM kernels and joins
(:mod:`.pcm`), word times on the emitted audio (:mod:`.timing`), per-request traces
(:mod:`.trace`) and background calibration of voices for windowed decoding
(:mod:`.calibration`). Imports the model and text layers, never the engine above it.
"""
