import pytest

from metasparse.errors import MetasparseError, TrainingDivergedError


def test_a_diverged_run_is_a_user_facing_error_and_still_a_floating_point_error():
    with pytest.raises(MetasparseError):
        raise TrainingDivergedError("training diverged")
    with pytest.raises(FloatingPointError):  # what callers written before this class still catch
        raise TrainingDivergedError("training diverged")
