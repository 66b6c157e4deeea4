"""The parameter counts the papers report (non-zero weights, biases excluded)."""

from __future__ import annotations

import pytest
import torch

from metasparse.sparsity.masks import bias_count, bias_names, count_nonzero, kept_weights, weight_names

SIREN_WIDTHS = (2, 256, 256, 256, 256, 3)  # the Meta-SparseINR image SIREN


def test_siren_counts_match_the_paper(make_params):
    params = make_params(SIREN_WIDTHS)
    assert kept_weights(params) == 197_888
    assert bias_count(params) == 1_027  # 4 x 256 + 3


def test_width_48_dense_narrow_net_has_7152_weights(make_params):
    assert kept_weights(make_params((2, 48, 48, 48, 48, 3))) == 7_152


def test_name_helpers_keep_dict_order(make_params):
    params = make_params()
    assert weight_names(params) == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    assert bias_names(params) == ["layers.0.bias", "layers.1.bias", "layers.2.bias"]


def test_masks_reduce_the_count_and_unmasked_weights_count_whole(make_params):
    params = make_params((2, 10, 3))  # weights: 20 + 30, biases 10 + 3
    mask = torch.ones(10, 2)
    mask[:, 0] = 0  # 10 of 20 pruned
    assert kept_weights(params, {"layers.0.weight": mask}) == 10 + 30
    assert kept_weights(params, {}) == kept_weights(params, None) == 50
    assert bias_count(params) == 13


def test_kept_weights_counts_mask_entries_not_values(make_params):
    params = make_params((2, 10, 3))
    params["layers.1.weight"][0] = 0.0  # a zero weight is still a sent (kept) weight
    assert kept_weights(params) == 50
    assert count_nonzero(params[n] for n in weight_names(params)) == 40


def test_per_signal_counts(make_params):
    params = make_params((2, 10, 3))
    masks = {"layers.0.weight": torch.ones(3, 10, 2), "layers.1.weight": torch.ones(3, 3, 10)}
    masks["layers.0.weight"][1, :4] = 0  # signal 1 loses 8
    masks["layers.1.weight"][2, 0, :5] = 0  # signal 2 loses 5
    counts = kept_weights(params, masks, per_signal=True)
    assert counts.dtype == torch.int64
    assert counts.tolist() == [50, 42, 45]
    assert kept_weights(params, {"layers.0.weight": masks["layers.0.weight"]}, per_signal=True).tolist() == [
        50, 42, 50
    ]


def test_count_nonzero_is_exact(make_params):
    values = [torch.tensor([0.0, 1e-30, -2.0]), torch.zeros(4), torch.tensor([[3.0, 0.0]])]
    assert count_nonzero(values) == 3  # no tolerance: 1e-30 counts
    assert count_nonzero([]) == 0
    batched = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert count_nonzero([batched, batched[:, :1]], per_signal=True).tolist() == [2, 0]
    with pytest.raises(ValueError):
        count_nonzero([], per_signal=True)


def test_other_parameters_are_not_counted(make_params):
    params = make_params((2, 10, 3))
    params["modulations"] = torch.ones(10)
    assert kept_weights(params) + bias_count(params) == 50 + 13
