"""Build the shipped SentencePiece instruction model: ``python -m gato_robot.tokenizer.build_text_model``.

The corpus is every instruction the RGB-stacking tasks can issue (colours, object names, verbs and
relations in several phrasings); training is deterministic for a fixed SentencePiece version.
"""

from __future__ import annotations

import argparse
import io
import itertools
from pathlib import Path

import sentencepiece as spm

from .text import DEFAULT_TEXT_MODEL

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
OBJECTS = ["object", "block", "cube", "shape", "piece", "item"]
VERBS = ["stack", "put", "place", "set", "move", "lift", "pick up", "push", "grasp"]
RELATIONS = ["on", "on top of", "onto", "above", "next to", "beside", "under", "left of", "right of"]
EXTRA = [
    "open the gripper", "close the gripper", "go home", "hold still", "stop",
    "move to the left", "move to the right", "move forward", "move back", "move up", "move down",
    "rotate the wrist", "release the object", "look at the basket", "reach the center of the basket",
]


def instruction_corpus() -> list[str]:
    """All instruction sentences used to train the text model."""
    lines = list(EXTRA)
    for verb, a, b, obj, rel in itertools.product(VERBS, COLOURS, COLOURS, OBJECTS, RELATIONS):
        if a != b:
            lines.append(f"{verb} the {a} {obj} {rel} the {b} {obj}")
    for verb, colour, obj in itertools.product(VERBS, COLOURS, OBJECTS):
        lines.append(f"{verb} the {colour} {obj}")
    return lines


def build(output: Path = DEFAULT_TEXT_MODEL, vocab_size: int = 256) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    # Sentences from an iterator and the model into memory: no temp paths leak into the trainer
    # spec stored in the model, so the file is byte-identical across builds.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(instruction_corpus()), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, num_threads=1, minloglevel=2,
        pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0, hard_vocab_limit=False,
        shuffle_input_sentence=False, normalization_rule_name="identity",
    )
    output.write_bytes(model.getvalue())
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_TEXT_MODEL)
    parser.add_argument("--vocab-size", type=int, default=256)
    args = parser.parse_args()
    print(build(args.output, args.vocab_size))


if __name__ == "__main__":
    main()
