"""Text tokenization with SentencePiece (Reed et al. 2022, Sec. 2.1).

Gato encodes text with a 32000-subword SentencePiece model into ids in [0, 32000). gato_robot only
needs task instructions ("stack the red object on the blue object"), so it ships a small
SentencePiece model trained on an instruction corpus (``assets/instructions.model``, built by
``python -m gato_robot.tokenizer.build_text_model``). Its ids are a subset of [0, 32000), so a
32k model can replace it without touching the model's vocabulary layout. Loaded from disk only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import sentencepiece as spm

from .errors import TokenizationError
from .ids import TEXT_VOCAB_SIZE

TEXT_MODEL_ASSETS = Path(__file__).parent / "assets"
DEFAULT_TEXT_MODEL = TEXT_MODEL_ASSETS / "instructions.model"


def resolve_text_model(model_path: str | Path) -> Path:
    """A shipped model by name (``instructions.model``), else a path (relative to the working directory)."""
    path = Path(model_path)
    if path.is_absolute():
        return path
    shipped = TEXT_MODEL_ASSETS / path
    return shipped if shipped.is_file() else path.resolve()


def portable_text_model(model_path: str | Path) -> str:
    """The name to store in a checkpoint config: shipped models by name (a checkpoint then loads on
    any machine, wherever the package is installed), other models by absolute path."""
    path = resolve_text_model(model_path)
    return path.name if path.parent.resolve() == TEXT_MODEL_ASSETS.resolve() else str(path.resolve())


class TextTokenizer:
    """SentencePiece text <-> ids in [0, 32000)."""

    def __init__(self, model_path: str | Path = DEFAULT_TEXT_MODEL):
        model_path = resolve_text_model(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"SentencePiece model not found at {model_path}; build it with "
                "`python -m gato_robot.tokenizer.build_text_model`"
            )
        self.model_path = model_path
        self._processor = spm.SentencePieceProcessor(model_file=str(model_path))
        if self._processor.get_piece_size() > TEXT_VOCAB_SIZE:
            raise TokenizationError(
                f"SentencePiece model {model_path} has {self._processor.get_piece_size()} pieces; "
                f"Gato's text range holds at most {TEXT_VOCAB_SIZE}"
            )

    @property
    def vocab_size(self) -> int:
        return int(self._processor.get_piece_size())

    def encode(self, text: str) -> np.ndarray:
        """Text -> int64 ids in [0, vocab_size)."""
        if not isinstance(text, str):
            raise TokenizationError(f"text: expected str, got {type(text).__name__}")
        return np.asarray(self._processor.encode(text, out_type=int), dtype=np.int64)

    def decode(self, ids: np.ndarray | list[int]) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if any(i < 0 or i >= self.vocab_size for i in ids):
            raise TokenizationError(f"text ids: expected values in [0, {self.vocab_size}), got {ids}")
        return self._processor.decode(ids)


@lru_cache(maxsize=4)
def load_text_tokenizer(model_path: str | Path = DEFAULT_TEXT_MODEL) -> TextTokenizer:
    """Shared, cached :class:`TextTokenizer` for a model file."""
    return TextTokenizer(model_path)
