"""The calibration tools' error: what went wrong and what to capture next."""


class CalibrationError(ValueError):
    """Input that cannot give a trustworthy calibration. The message says what to capture next."""
