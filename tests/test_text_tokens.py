from pathlib import Path

import numpy as np
import pytest

from gato_robot.tokenizer.build_text_model import build, instruction_corpus
from gato_robot.tokenizer.errors import TokenizationError
from gato_robot.tokenizer.text import DEFAULT_TEXT_MODEL, TextTokenizer


def test_instruction_round_trips_with_ids_in_gato_text_range():
    text = TextTokenizer()
    ids = text.encode("stack the red object on the blue object")
    assert ids.dtype == np.int64 and 0 < len(ids) <= 8
    assert ids.min() >= 0 and ids.max() < 32000
    assert text.decode(ids) == "stack the red object on the blue object"


def test_shipped_model_is_rebuilt_byte_for_byte(tmp_path: Path):
    rebuilt = build(tmp_path / "instructions.model")
    assert rebuilt.read_bytes() == DEFAULT_TEXT_MODEL.read_bytes()


def test_every_corpus_sentence_round_trips():
    text = TextTokenizer()
    for sentence in instruction_corpus()[::97]:
        assert text.decode(text.encode(sentence)) == sentence


def test_missing_model_and_bad_input_fail_clearly(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
        TextTokenizer(tmp_path / "nope.model")
    with pytest.raises(TokenizationError, match="expected str"):
        TextTokenizer().encode(42)


def test_shipped_text_model_is_stored_by_name_and_other_models_by_absolute_path(tmp_path):
    from gato_robot.tokenizer.sequence import TimestepSpec

    assert TimestepSpec(text_model=str(DEFAULT_TEXT_MODEL)).text_model == "instructions.model"
    assert TextTokenizer("instructions.model").model_path == DEFAULT_TEXT_MODEL
    own = build(tmp_path / "own.model")
    assert TimestepSpec(text_model=str(own)).text_model == str(own.resolve())
