import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gato_robot.tokenizer.errors import TokenizationError
from gato_robot.tokenizer.mulaw import (
    HALF_BIN, M, MU, bins_to_continuous, continuous_to_bins, detokenize_continuous, mu_law_decode,
    mu_law_encode, tokenize_continuous, tokenize_discrete,
)

values_in_range = st.floats(min_value=-M, max_value=M, allow_nan=False, allow_infinity=False)


def by_hand(x: float) -> int:
    """The paper's formula written out independently of the implementation."""
    f = math.copysign(math.log(abs(x) * 100 + 1) / math.log(256 * 100 + 1), x)
    f = max(-1.0, min(1.0, f))
    return min(math.floor((f + 1) * 512), 1023) + 32000


def test_worked_example_from_docstring():
    assert int(tokenize_continuous(0.5)) == 32710
    assert float(detokenize_continuous(np.int64(32710))) == pytest.approx(0.501753, abs=1e-6)


@given(values_in_range)
def test_token_id_matches_the_paper_formula(x):
    assert int(tokenize_continuous(x)) == by_hand(x)


@given(values_in_range)
def test_round_trip_within_half_a_bin(x):
    decoded = float(detokenize_continuous(tokenize_continuous(x)))
    # Within half a bin in companded space ...
    assert abs(float(mu_law_encode(decoded)) - float(mu_law_encode(x))) <= HALF_BIN + 1e-12
    # ... which bounds the error in value space by the inverse companding of that interval.
    lo = float(mu_law_decode(float(mu_law_encode(x)) - HALF_BIN))
    hi = float(mu_law_decode(float(mu_law_encode(x)) + HALF_BIN))
    assert lo - 1e-9 <= decoded <= hi + 1e-9


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=64))
def test_ids_always_in_continuous_range(values):
    ids = tokenize_continuous(np.array(values))
    assert ids.dtype == np.int64
    assert ids.min() >= 32000 and ids.max() < 33024


def test_values_beyond_M_saturate_to_the_end_bins():
    assert int(continuous_to_bins(1e6)) == 1023
    assert int(continuous_to_bins(-1e6)) == 0
    assert int(continuous_to_bins(M)) == 1023
    assert float(bins_to_continuous(np.int64(1023))) < M


def test_zero_sits_on_a_bin_boundary_and_decodes_close_to_zero():
    assert int(continuous_to_bins(0.0)) == 512
    assert abs(float(bins_to_continuous(np.int64(512)))) < 1e-3


def test_companding_is_monotonic_and_odd():
    x = np.linspace(-M, M, 10001)
    f = mu_law_encode(x)
    assert np.all(np.diff(f) > 0)
    np.testing.assert_allclose(f, -mu_law_encode(-x), atol=1e-15)
    np.testing.assert_allclose(mu_law_decode(f), x, rtol=1e-9, atol=1e-9)
    assert MU == 100 and M == 256


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad):
    with pytest.raises(TokenizationError, match="NaN/Inf at flat index \\[1\\]"):
        tokenize_continuous(np.array([0.1, bad, 0.2]))


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=1023))
def test_discrete_values_are_their_own_ids(value):
    assert int(tokenize_discrete(np.int64(value))) == value


@pytest.mark.parametrize("bad", [[-1], [1024], [5000]])
def test_discrete_values_out_of_range_are_rejected(bad):
    with pytest.raises(TokenizationError, match=r"\[0, 1024\)"):
        tokenize_discrete(np.array(bad))


def test_discrete_rejects_floats_and_detokenize_rejects_foreign_ids():
    with pytest.raises(TokenizationError, match="integer"):
        tokenize_discrete(np.array([1.5]))
    with pytest.raises(TokenizationError, match=r"\[32000, 33024\)"):
        detokenize_continuous(np.array([31999]))
    with pytest.raises(TokenizationError, match=r"\[0, 1024\)"):
        bins_to_continuous(np.array([1024]))
