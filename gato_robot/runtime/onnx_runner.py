"""ONNX Runtime backend with I/O binding onto fixed buffers.

Every input and output is bound once, at construction, to a preallocated array; a step copies
the new observation into the bound input arrays, runs, and appends the new keys/values to the
cache. The cache arrays are numpy views of the torch buffers (zero copy), so nothing on the hot
path allocates besides what the tokenizer produces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import load_config
from ..tokenizer.ids import NUM_CONTINUOUS_BINS
from ..tokenizer.sequence import TokenSequence
from .base import GraphRunner
from ..errors import reading
from .export import DECODE_FILE, PREFILL_FILE

TOKEN_INPUTS = ("token_ids", "obs_positions", "patch_rows", "patch_cols", "image_index")


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("the onnxruntime backend needs `pip install 'gato-robot[deploy]'`") from error
    return onnxruntime


class OnnxRunner(GraphRunner):
    backend = "onnxruntime"

    def __init__(self, export_dir: str | Path, threads: int = 0, temperature: float = 0.0, expectation: str = "off",
                 batch_size: int = 1):
        """``batch_size`` rows act in lockstep (one prefill and one decode call per token for all)."""
        export_dir = Path(export_dir)
        for name in (PREFILL_FILE, DECODE_FILE):
            if not (export_dir / name).is_file():
                raise FileNotFoundError(f"ONNX export incomplete: expected {export_dir / name} "
                                        "(run `gato-robot export onnx CHECKPOINT`)")
        super().__init__(load_config(export_dir), temperature=temperature, expectation=expectation,
                         batch_size=batch_size)
        ort = _require_onnxruntime()
        # The prefill (hundreds of tokens) parallelizes over ``threads`` (default: torch's thread
        # budget for this process, all cores unless a caller such as an evaluation worker set 1); the
        # decode step (one token) is overhead-bound and runs on the calling thread alone, so the
        # prefill pool's spinning worker never competes with a second pool for the cores.
        prefill_options, decode_options = ort.SessionOptions(), ort.SessionOptions()
        for options in (prefill_options, decode_options):
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        prefill_options.intra_op_num_threads = threads or torch.get_num_threads()
        decode_options.intra_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        # ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...) for a truncated or foreign file.
        with reading(export_dir / PREFILL_FILE, "ONNX graph", Exception):
            self._prefill_session = ort.InferenceSession(str(export_dir / PREFILL_FILE), prefill_options,
                                                         providers=providers)
        with reading(export_dir / DECODE_FILE, "ONNX graph", Exception):
            self._decode_session = ort.InferenceSession(str(export_dir / DECODE_FILE), decode_options,
                                                        providers=providers)

        c, spec, b = self.config, self.config.timestep, batch_size
        length = spec.observation_tokens
        num_patches = len(spec.camera_names) * spec.patches_per_image
        self._tokens = {name: np.zeros((b, length), np.int64) for name in TOKEN_INPUTS}
        self._patches = np.zeros((b, num_patches, 3, c.patch_size, c.patch_size), np.float32)
        self._action_token = np.zeros((b, 1), np.int64)
        self._past = np.zeros(1, np.int64)
        self._logits = np.zeros((b, NUM_CONTINUOUS_BINS), np.float32)
        new_shape = lambda n: (c.n_layer, b, c.n_head, n, c.head_dim)  # noqa: E731
        self._prefill_new = (np.zeros(new_shape(length), np.float32), np.zeros(new_shape(length), np.float32))
        self._decode_new = (np.zeros(new_shape(1), np.float32), np.zeros(new_shape(1), np.float32))
        cache_arrays = {"cache_keys": self.cache.keys, "cache_values": self.cache.values,
                        "past_length": self._past}
        self._prefill_binding = self._bind(
            self._prefill_session, {**self._tokens, "patches": self._patches, **cache_arrays}, self._prefill_new)
        self._decode_binding = self._bind(
            self._decode_session, {"action_token": self._action_token, **cache_arrays}, self._decode_new)

    def _bind(self, session, inputs: dict[str, np.ndarray], new: tuple[np.ndarray, np.ndarray]):
        ort = _require_onnxruntime()
        binding = session.io_binding()
        for name, array in inputs.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        for name, array in zip(("action_logits", "new_keys", "new_values"), (self._logits, *new)):
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
        return binding

    def _outputs(self, new: tuple[np.ndarray, np.ndarray]):
        return self._logits, new[0], new[1]

    def _prefill(self, observations: list[TokenSequence]):
        for row, observation in enumerate(observations):
            for name, array in self._tokens.items():
                np.copyto(array[row], getattr(observation, name))
            np.copyto(self._patches[row], observation.patches)
        self._past[0] = self.cache.length
        self._prefill_session.run_with_iobinding(self._prefill_binding)
        return self._outputs(self._prefill_new)

    def _decode(self, token_ids: np.ndarray):
        self._action_token[:, 0] = token_ids
        self._past[0] = self.cache.length
        self._decode_session.run_with_iobinding(self._decode_binding)
        return self._outputs(self._decode_new)
