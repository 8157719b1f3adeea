"""The one exception type the tokenizer raises for bad input."""


class TokenizationError(ValueError):
    """Input the tokenizer cannot encode faithfully: NaN/Inf, wrong shape, wrong dtype, out of range.

    The message always names the offending input, what was expected and what came instead.
    """
