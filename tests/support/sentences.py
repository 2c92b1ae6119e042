"""English sentences the quality checks share (tests and bench/): everyday, varied in
length and punctuation, none of them a benchmark's own."""

from __future__ import annotations

# bench/int8_quality.py's six, also half of test_openvino_generator.py's set
EVERYDAY = [
    "The bus driver waved at the children as they crossed the wet street.",
    "Did you remember to water the plants on the balcony this morning?",
    "Forty seven small boats sailed past the old harbour wall at noon.",
    "Honestly, I never expected the concert to sell out in ten minutes!",
    "She folded the map carefully and put it back into her coat pocket.",
    "A cold wind blew across the hills, bending the tall grass towards the sea.",
]
