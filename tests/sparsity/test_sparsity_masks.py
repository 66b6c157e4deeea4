"""Masks and the parameter counts the papers report (non-zero weights, biases excluded)."""

from __future__ import annotations

import pytest
import torch

from metasparse.sparsity.masks import (
    NonzeroCount,
    apply_masks,
    bias_names,
    count_nonzero,
    count_nonzero_by_kind,
    density,
    layer_densities,
    ones_like_masks,
    weight_names,
)

SIREN_WIDTHS = (2, 256, 256, 256, 256, 3)  # the Meta-SparseINR image SIREN


def test_siren_counts_match_the_paper(make_params):
    params = make_params(SIREN_WIDTHS)
    counts = count_nonzero_by_kind(params)
    assert counts == NonzeroCount(weights=197_888, biases=1_027)
    assert counts.total == 198_915
    assert count_nonzero(params) == 197_888
    assert count_nonzero(params, include_biases=True) == 198_915


def test_width_48_dense_narrow_net_has_7152_weights(make_params):
    assert count_nonzero(make_params((2, 48, 48, 48, 48, 3))) == 7_152


def test_name_helpers_keep_dict_order(make_params):
    params = make_params()
    assert weight_names(params) == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    assert bias_names(params) == ["layers.0.bias", "layers.1.bias", "layers.2.bias"]


def test_ones_like_masks_defaults_to_weights(make_params):
    params = make_params()
    masks = ones_like_masks(params)
    assert list(masks) == weight_names(params)
    assert all(masks[n].shape == params[n].shape and bool(torch.all(masks[n] == 1)) for n in masks)
    assert list(ones_like_masks(params, ["layers.1.bias"])) == ["layers.1.bias"]
    with pytest.raises(KeyError):
        ones_like_masks(params, ["nope.weight"])


def test_apply_masks_multiplies_only_masked_parameters(make_params):
    params = make_params()
    masks = ones_like_masks(params)
    masks["layers.1.weight"][0] = 0
    masked = apply_masks(params, masks)
    assert torch.all(masked["layers.1.weight"][0] == 0)
    assert torch.equal(masked["layers.1.weight"][1:], params["layers.1.weight"][1:])
    assert masked["layers.1.bias"] is params["layers.1.bias"]
    assert apply_masks(params, None) == params
    with pytest.raises(KeyError):
        apply_masks(params, {"missing.weight": torch.ones(1)})


def test_shared_masks_broadcast_over_a_batch_of_parameters(make_params):
    batched = make_params(batch=4)
    mask = torch.zeros_like(batched["layers.0.weight"][0])
    masked = apply_masks(batched, {"layers.0.weight": mask})
    assert masked["layers.0.weight"].shape == batched["layers.0.weight"].shape
    assert torch.all(masked["layers.0.weight"] == 0)


def test_density_and_counts_with_masks(make_params):
    params = make_params((2, 10, 3))  # weights: 20 + 30
    masks = ones_like_masks(params)
    masks["layers.0.weight"][:, 0] = 0  # 10 of 20 pruned
    assert density(masks) == pytest.approx(40 / 50)
    assert layer_densities(masks) == {"layers.0.weight": 0.5, "layers.1.weight": 1.0}
    assert count_nonzero(params, masks) == 40
    assert count_nonzero_by_kind(params, masks).biases == 13
    assert density({}) == 1.0


def test_counts_are_of_values_so_zero_weights_do_not_count(make_params):
    params = make_params((2, 10, 3))
    params["layers.1.weight"][0] = 0.0
    params["layers.1.bias"][:] = 0.0
    assert count_nonzero_by_kind(params) == NonzeroCount(weights=40, biases=10)  # a (3, 10) row of 10 is zero


def test_other_parameters_are_not_counted(make_params):
    params = make_params((2, 10, 3))
    params["modulations"] = torch.ones(10)
    assert count_nonzero(params, include_biases=True) == 50 + 13
