"""User-facing errors: the CLI prints these as one line, without a traceback."""


class LmjaxError(ValueError):
    """Something the user asked for is wrong; the message says what and how to fix it."""


class ConfigError(LmjaxError):
    """A config value, key or combination is invalid."""


class DataError(LmjaxError):
    """A corpus, tokenizer or data file is missing, empty or malformed."""


class CheckpointError(LmjaxError):
    """A checkpoint or run directory cannot be used."""


class TrainingDiverged(LmjaxError):
    """The loss became NaN or Inf."""
