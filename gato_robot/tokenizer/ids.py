"""Token id ranges of the Gato vocabulary (Reed et al. 2022, "A Generalist Agent", Sec. 2.1).

One table, the single source of truth for every id the model sees or emits:

=====================  ==================  ==========================================================
range                  what                how it is made
=====================  ==================  ==========================================================
[0, 32000)             text                SentencePiece subword ids (Gato uses a 32k vocabulary)
[0, 1024)              discrete values     the integer itself (shares ids with text, as in Gato)
[32000, 33024)         continuous values   mu-law companded, 1024 uniform bins, id = bin + 32000
33024                  separator ``|``     one per timestep, between observation and action tokens
33025                  padding             fills short sequences in a batch; never a loss target
(no id)                image patches       embedded from pixels by the ResNet patch encoder; the
                                           id slot holds ``IMAGE_PLACEHOLDER_ID`` and is never read
=====================  ==================  ==========================================================

Actions in RGB stacking are continuous, so action tokens are always in [32000, 33024).
"""

from __future__ import annotations

TEXT_VOCAB_SIZE = 32_000
"""Gato: 'Text is encoded via SentencePiece with 32000 subwords into the integer range [0, 32000)'."""

DISCRETE_VOCAB_SIZE = 1024
"""Gato: 'Discrete values ... are flattened ... into integers within the range [0, 1024)'."""

NUM_CONTINUOUS_BINS = 1024
"""Gato: continuous values are 'discretized to 1024 uniform bins'."""

CONTINUOUS_OFFSET = TEXT_VOCAB_SIZE
"""Gato: 'The discrete integers are then shifted to the range of [32000, 33024)'."""

SEPARATOR_ID = CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS  # 33024
PAD_ID = SEPARATOR_ID + 1  # 33025
VOCAB_SIZE = PAD_ID + 1  # 33026: size of the embedding table and of the output logits
IMAGE_PLACEHOLDER_ID = 0
"""Value stored in the id slot of an image-patch token. The model never embeds it."""
