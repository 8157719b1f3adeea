"""TensorRT backend: both engines bound once to fixed CUDA buffers; the decode step is replayed
from a CUDA graph (its shapes and addresses never change), the prefill runs as a plain enqueue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DamagedFileError
from ..model.checkpoint import load_config
from ..tokenizer.ids import NUM_CONTINUOUS_BINS
from ..tokenizer.sequence import TokenSequence
from .base import GraphRunner
from .export import DECODE_FILE, PREFILL_FILE
from .onnx_runner import TOKEN_INPUTS
from .tensorrt_engine import engine_name, require_tensorrt


class TensorRTRunner(GraphRunner):
    backend = "tensorrt"

    def __init__(self, engine_dir: str | Path, cuda_graph: bool = True, temperature: float = 0.0,
                 expectation: str = "off"):
        trt = require_tensorrt()
        engine_dir = Path(engine_dir)
        paths = [engine_dir / engine_name(PREFILL_FILE), engine_dir / engine_name(DECODE_FILE)]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"TensorRT engine not found: expected {path} "
                                        "(run `gato-robot export tensorrt ONNX_DIR --out ENGINE_DIR`)")
        super().__init__(load_config(engine_dir), device="cuda", temperature=temperature, expectation=expectation)
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self._engines = [runtime.deserialize_cuda_engine(p.read_bytes()) for p in paths]
        for path, engine in zip(paths, self._engines):
            if engine is None:  # TensorRT logs the reason and returns None for a damaged or foreign engine
                raise DamagedFileError(path, "not a loadable TensorRT engine (truncated, or built by another "
                                             "TensorRT version or GPU; rebuild it with `gato-robot export tensorrt`)")
        self._prefill_ctx, self._decode_ctx = (e.create_execution_context() for e in self._engines)
        self.stream = torch.cuda.Stream()

        c, spec = self.config, self.config.timestep
        length = spec.observation_tokens
        num_patches = len(spec.camera_names) * spec.patches_per_image
        cuda = torch.device("cuda")
        self._tokens = {name: torch.zeros((1, length), dtype=torch.long, device=cuda) for name in TOKEN_INPUTS}
        self._patches = torch.zeros((1, num_patches, 3, c.patch_size, c.patch_size), device=cuda)
        self._host_tokens = {name: torch.zeros((1, length), dtype=torch.long).pin_memory() for name in TOKEN_INPUTS}
        self._host_patches = torch.zeros(self._patches.shape).pin_memory()
        self._action_token = torch.zeros((1, 1), dtype=torch.long, device=cuda)
        self._past = torch.zeros(1, dtype=torch.long, device=cuda)
        self._logits = torch.zeros((1, NUM_CONTINUOUS_BINS), device=cuda)
        shape = lambda n: (c.n_layer, 1, c.n_head, n, c.head_dim)  # noqa: E731
        self._prefill_new = (torch.zeros(shape(length), device=cuda), torch.zeros(shape(length), device=cuda))
        self._decode_new = (torch.zeros(shape(1), device=cuda), torch.zeros(shape(1), device=cuda))
        cache = {"cache_keys": self.cache.keys, "cache_values": self.cache.values, "past_length": self._past}
        self._bind(self._prefill_ctx, {**self._tokens, "patches": self._patches, **cache}, self._prefill_new)
        self._bind(self._decode_ctx, {"action_token": self._action_token, **cache}, self._decode_new)
        self._graph = self._capture_decode() if cuda_graph else None

    def _bind(self, context, inputs: dict[str, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor]) -> None:
        for name, tensor in inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        for name, tensor in zip(("action_logits", "new_keys", "new_values"), (self._logits, *new)):
            context.set_tensor_address(name, tensor.data_ptr())

    def _capture_decode(self) -> torch.cuda.CUDAGraph:
        # One plain enqueue first: TensorRT finishes deferred set-up outside the capture.
        self._decode_ctx.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self._decode_ctx.execute_async_v3(self.stream.cuda_stream)
        return graph

    def _prefill(self, observations: list[TokenSequence]):
        (observation,) = observations  # the engines are built for batch 1 (the arm's)
        with torch.cuda.stream(self.stream):
            for name, device_array in self._tokens.items():
                self._host_tokens[name][0].copy_(torch.from_numpy(getattr(observation, name)))
                device_array.copy_(self._host_tokens[name], non_blocking=True)
            self._host_patches[0].copy_(torch.from_numpy(observation.patches))
            self._patches.copy_(self._host_patches, non_blocking=True)
            self._past.fill_(self.cache.length)
            if not self._prefill_ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT prefill enqueue failed")
        self.stream.synchronize()
        return self._logits, *self._prefill_new

    def _decode(self, token_ids: np.ndarray):
        with torch.cuda.stream(self.stream):
            self._action_token.fill_(int(token_ids[0]))
            self._past.fill_(self.cache.length)
            if self._graph is not None:
                self._graph.replay()
            elif not self._decode_ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT decode enqueue failed")
        self.stream.synchronize()
        return self._logits, *self._decode_new

    def act(self, observation: TokenSequence) -> np.ndarray:
        with torch.cuda.stream(self.stream):
            return super().act(observation)
