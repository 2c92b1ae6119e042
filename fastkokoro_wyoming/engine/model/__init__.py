"""Model layer: the Kokoro ONNX graph and what it needs to run.

The contract read from the graph (:mod:`.contract`), providers and sessions
(:mod:`.runtime`), weight rewrites (:mod:`.weights`), CUDA-graph buffers
(:mod:`.cuda_graphs`), voice style tables (:mod:`.voices`), idle unload
(:mod:`.residency`) and the windowed split of the classic model (:mod:`.windowed`).
Imports the text layer (vocabulary, languages) and the foundation, nothing that serves.
"""
