"""Continuous and discrete value tokenization (Reed et al. 2022, Sec. 2.1 and Eq. 3).

Continuous values (proprioception, actions) are mu-law companded,

    F(x) = sgn(x) * log(|x| * mu + 1) / log(M * mu + 1),      mu = 100, M = 256,

clipped to [-1, 1], discretized to 1024 uniform bins and shifted past the text vocabulary:

    bin = min(floor((F(x) + 1) * 512), 1023),      token id = bin + 32000.

Detokenization takes the bin centre ``c = (2 * bin + 1) / 1024 - 1`` and inverts the companding,

    F^-1(c) = sgn(c) * ((M * mu + 1) ** |c| - 1) / mu,

so a round trip is exact to within half a bin (1/1024) in companded space.

Worked example, checkable by hand: x = 0.5 -> F = log(51) / log(25601) = 0.387357...
-> bin = floor(1.387357 * 512) = 710 -> id = 32710; decoding 710 gives c = 1421/1024 - 1 = 0.387695
-> x = (25601 ** 0.387695 - 1) / 100 = 0.501753.
"""

from __future__ import annotations

import numpy as np

from .errors import TokenizationError
from .ids import CONTINUOUS_OFFSET, DISCRETE_VOCAB_SIZE, NUM_CONTINUOUS_BINS

MU = 100.0
M = 256.0
_LOG_DENOM = float(np.log(M * MU + 1.0))
HALF_BIN = 1.0 / NUM_CONTINUOUS_BINS
"""Half the width of one bin in companded space: bins are 2/1024 wide on [-1, 1]."""


def _as_finite_float_array(values: np.ndarray | float, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array.reshape(-1)))
        raise TokenizationError(
            f"{name}: expected finite values, got NaN/Inf at flat index {bad[:8].tolist()}"
        )
    return array


def mu_law_encode(x: np.ndarray | float) -> np.ndarray:
    """Mu-law companding F(x), clipped to [-1, 1] (values with |x| > M saturate)."""
    x = _as_finite_float_array(x, "mu_law_encode input")
    magnitude = np.minimum(np.abs(x), M)  # |x| >= M gives F = 1: the clip, without overflow
    return np.sign(x) * np.log(magnitude * MU + 1.0) / _LOG_DENOM


def mu_law_decode(companded: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`mu_law_encode` on [-1, 1]."""
    companded = np.clip(_as_finite_float_array(companded, "mu_law_decode input"), -1.0, 1.0)
    return np.sign(companded) * (np.exp(np.abs(companded) * _LOG_DENOM) - 1.0) / MU


def continuous_to_bins(x: np.ndarray | float) -> np.ndarray:
    """Continuous values -> bin indices in [0, 1024), same shape as ``x``."""
    companded = mu_law_encode(x)
    bins = np.floor((companded + 1.0) * (NUM_CONTINUOUS_BINS / 2)).astype(np.int64)
    return np.minimum(bins, NUM_CONTINUOUS_BINS - 1)


def _integers_in_range(values: np.ndarray | int, low: int, high: int, name: str) -> np.ndarray:
    """``values`` as an int64 array, or a :class:`TokenizationError` naming ``name`` and [low, high)."""
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer):
        raise TokenizationError(f"{name}: expected an integer array, got dtype {array.dtype}")
    if array.size and (array.min() < low or array.max() >= high):
        raise TokenizationError(f"{name}: expected values in [{low}, {high}), got range [{array.min()}, {array.max()}]")
    return array.astype(np.int64)


def bins_to_continuous(bins: np.ndarray | int) -> np.ndarray:
    """Bin indices in [0, 1024) -> the value at each bin's centre (float64)."""
    bins = _integers_in_range(bins, 0, NUM_CONTINUOUS_BINS, "bins")
    return mu_law_decode((2.0 * bins + 1.0) / NUM_CONTINUOUS_BINS - 1.0)


BIN_VALUES = bins_to_continuous(np.arange(NUM_CONTINUOUS_BINS))
"""The decoded value of every bin's centre, (1024,) float64: what an expectation over the bins
averages in physical space (runtime decoding, held-out training metrics)."""


def tokenize_continuous(x: np.ndarray | float) -> np.ndarray:
    """Continuous values -> token ids in [32000, 33024), int64, row-major flattened order kept."""
    return continuous_to_bins(x) + CONTINUOUS_OFFSET


def detokenize_continuous(token_ids: np.ndarray | int) -> np.ndarray:
    """Token ids in [32000, 33024) -> continuous values (float64). Raises on any other id."""
    ids = _integers_in_range(token_ids, CONTINUOUS_OFFSET, CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS,
                             "continuous token ids")
    return bins_to_continuous(ids - CONTINUOUS_OFFSET)


def tokenize_discrete(values: np.ndarray | int) -> np.ndarray:
    """Discrete values (integers in [0, 1024)) -> token ids: the integers themselves, int64."""
    return _integers_in_range(values, 0, DISCRETE_VOCAB_SIZE, "discrete values")
