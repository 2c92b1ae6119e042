"""Text layer: what a request says, down to model ids. Pure Python, no model.

Cleanup and pause tokens (:mod:`.cleanup`), each language's reading rules
(:mod:`.reading`), sentence boundaries for streamed text (:mod:`.sentences`), the nine
languages (:mod:`.languages`), G2P (:mod:`.g2p`), the phoneme vocabulary (:mod:`.vocab`),
cutting phonemes into model-sized segments (:mod:`.segmentation`) and which ids say which
written word (:mod:`.words`). Imports only the engine's foundation (errors, settings, types).
"""
