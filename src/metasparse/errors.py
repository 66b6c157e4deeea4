"""Errors that the CLI reports as one line and a non-zero exit (never a traceback)."""


class MetasparseError(Exception):
    """Base class of every error meant for the user rather than the developer."""


class DataError(MetasparseError):
    """An input signal or dataset could not be read or is not usable."""


class ModelError(MetasparseError):
    """A checkpoint or model file is missing, corrupt or incompatible."""


class BitstreamError(MetasparseError):
    """A compressed file is truncated, corrupt, or was made with another model."""


class ConfigError(MetasparseError):
    """An experiment preset or override is unknown or invalid."""


class TrainingDivergedError(MetasparseError, FloatingPointError):
    """Meta-training produced a non-finite loss or state; the last good checkpoint is kept."""
