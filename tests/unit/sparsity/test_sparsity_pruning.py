"""Global magnitude pruning (Algorithm 1 of Meta-SparseINR) and its baselines."""

from __future__ import annotations

import math

import pytest
import torch

from metasparse.sparsity.masks import count_nonzero, kept_weights, weight_names
from metasparse.sparsity.pruning import (
    global_magnitude_prune,
    global_magnitude_prune_batched,
    num_to_prune,
    prunable_names,
    prune_to_count_batched,
    random_prune,
    surviving_after_rounds,
)

SIREN_WIDTHS = (2, 256, 256, 256, 256, 3)  # the Meta-SparseINR image SIREN: 197,888 weights


def ones_like_masks(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All-ones masks of every weight: a dense network."""
    return {name: torch.ones_like(params[name]) for name in weight_names(params)}


def count_nonzero_weights(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> int:
    """Non-zero entries of the masked weights, counted on the values (not on the masks)."""
    return count_nonzero(params[n] * masks[n] if n in masks else params[n] for n in weight_names(params))


def prune_to_count(params, masks, num_to_keep):
    """``prune_to_count_batched`` on a batch of one signal."""
    batch = {n: p[None] for n, p in params.items()}
    shared = None if masks is None else {n: m[None] for n, m in masks.items()}
    return {n: m[0] for n, m in prune_to_count_batched(batch, shared, num_to_keep).items()}


def test_fifteen_rounds_of_twenty_percent_leave_the_papers_6964_weights():
    # Truncating each round's count reproduces the paper; rounding each round would give 6,962.
    assert surviving_after_rounds(197_888, 15) == 6_964
    assert round(197_888 * 0.8**15) == 6_963
    assert surviving_after_rounds(197_888, 14) > 7_152  # 14 rounds are not enough for 7,152


def test_count_helpers():
    assert num_to_prune(197_888) == 39_577  # floor(39,577.6)
    assert num_to_prune(100, 0.29) == 29  # 0.29 * 100 is 28.999999999999996 in binary
    assert surviving_after_rounds(10, 3, 0.0) == 10
    with pytest.raises(ValueError):
        num_to_prune(10, 1.5)
    assert surviving_after_rounds(4, 10) == 4  # 20 % of 4 or fewer weights rounds down to 0: pruning stalls


def test_iterative_pruning_of_a_siren_reproduces_the_exact_counts(make_params):
    params = make_params(SIREN_WIDTHS)
    masks = ones_like_masks(params)
    for round_index in range(1, 16):
        previous = masks
        masks = global_magnitude_prune(params, masks)
        assert count_nonzero_weights(params, masks) == surviving_after_rounds(197_888, round_index)
        for name in masks:  # pruned weights stay pruned
            assert torch.all(masks[name] <= previous[name])
    assert count_nonzero_weights(params, masks) == 6_964
    assert kept_weights(params, masks) == 6_964
    assert kept_weights(params, masks) / 197_888 == pytest.approx(0.8**15, rel=1e-3)
    assert set(masks) == {f"layers.{i}.weight" for i in range(5)}  # biases never get a mask


def test_one_global_threshold_over_all_layers(make_params):
    params = make_params((2, 32, 32, 3))
    masks = global_magnitude_prune(params, ones_like_masks(params), fraction=0.5)
    kept = torch.cat([params[n][masks[n] == 1].abs() for n in masks])
    pruned = torch.cat([params[n][masks[n] == 0].abs() for n in masks])
    assert pruned.numel() == math.floor(0.5 * (64 + 1024 + 96))
    assert float(pruned.max()) <= float(kept.min())


def test_layers_compete_for_the_budget(make_params):
    params = make_params((2, 32, 32, 3))
    params["layers.1.weight"] = params["layers.1.weight"] * 1e-6  # one layer of tiny weights
    masks = global_magnitude_prune(params, None, fraction=0.5)  # removes 592 of 1184
    assert int(masks["layers.1.weight"].sum()) == 1024 - 592  # all taken from the tiny layer
    assert torch.all(masks["layers.0.weight"] == 1) and torch.all(masks["layers.2.weight"] == 1)


def test_ties_are_broken_by_position(make_params):
    params = {name: torch.ones_like(p) for name, p in make_params((2, 4, 3)).items()}
    masks = global_magnitude_prune(params, None, fraction=0.5)  # 10 of 20 equal weights
    assert torch.all(masks["layers.0.weight"] == 0)  # the first 8 entries in order
    assert masks["layers.1.weight"].flatten().tolist() == [0.0, 0.0] + [1.0] * 10


def test_only_surviving_weights_are_counted_and_scored(make_params):
    params = make_params((2, 8, 3))
    masks = ones_like_masks(params)
    masks["layers.0.weight"].zero_()  # 16 pruned earlier, 24 survive
    new = global_magnitude_prune(params, masks, fraction=0.25)
    assert count_nonzero_weights(params, new) == 24 - 6
    assert torch.all(new["layers.0.weight"] == 0)


def test_prunable_list_excludes_a_fixed_first_layer(make_params):
    params = make_params((2, 16, 16, 3))
    masks = global_magnitude_prune(params, None, prunable=["layers.1.weight", "layers.2.weight"])
    assert "layers.0.weight" not in masks
    assert count_nonzero_weights(params, masks) == 32 + (256 + 48) - math.floor(0.2 * (256 + 48))


def test_biases_can_never_be_pruned(make_params):
    params = make_params()
    with pytest.raises(ValueError):
        global_magnitude_prune(params, None, prunable=["layers.0.weight", "layers.0.bias"])
    with pytest.raises(KeyError):
        prunable_names(params, ["layers.9.weight"])


def test_masks_keep_their_dtype_and_non_prunable_masks_pass_through(make_params):
    params = make_params((2, 16, 3))
    masks = {"layers.0.weight": torch.ones(16, 2, dtype=torch.float64), "layers.0.bias": torch.ones(16)}
    new = global_magnitude_prune(params, masks)
    assert new["layers.0.weight"].dtype == torch.float64
    assert new["layers.1.weight"].dtype == params["layers.1.weight"].dtype
    assert new["layers.0.bias"] is masks["layers.0.bias"]


def test_random_pruning_removes_the_same_count_but_other_weights(make_params):
    params = make_params((2, 64, 64, 3))
    masks = ones_like_masks(params)
    magnitude = global_magnitude_prune(params, masks)
    random_a = random_prune(masks, generator=torch.Generator().manual_seed(0))
    random_b = random_prune(masks, generator=torch.Generator().manual_seed(0))
    assert count_nonzero_weights(params, random_a) == count_nonzero_weights(params, magnitude)
    assert all(torch.equal(random_a[n], random_b[n]) for n in masks)
    assert any(not torch.equal(random_a[n], magnitude[n]) for n in masks)
    again = random_prune(random_a, generator=torch.Generator().manual_seed(1))
    assert all(bool(torch.all(again[n] <= random_a[n])) for n in masks)


def test_prune_to_count_keeps_exactly_the_largest(make_params):
    params = make_params((2, 32, 32, 3))
    masks = prune_to_count(params, None, num_to_keep=100)
    assert count_nonzero_weights(params, masks) == 100
    kept = torch.cat([params[n][masks[n] == 1].abs() for n in masks])
    all_magnitudes = torch.cat([params[n].abs().flatten() for n in masks])
    assert torch.equal(kept.sort().values, all_magnitudes.topk(100).values.sort().values)
    unchanged = prune_to_count(params, masks, num_to_keep=500)  # masks never grow back
    assert count_nonzero_weights(params, unchanged) == 100


def test_batched_pruning_equals_pruning_each_signal(make_params):
    batched = make_params((2, 16, 16, 3), batch=3)
    signal = [{n: p[i] for n, p in batched.items()} for i in range(3)]

    shared = ones_like_masks(signal[0])
    round_one = global_magnitude_prune_batched(batched, shared)
    round_two = global_magnitude_prune_batched(batched, round_one, fraction=0.3)
    for i in range(3):
        expected = global_magnitude_prune(signal[i], global_magnitude_prune(signal[i], shared), fraction=0.3)
        assert all(torch.equal(round_two[n][i], expected[n]) for n in expected)
    assert not torch.equal(round_two["layers.1.weight"][0], round_two["layers.1.weight"][1])

    one_shot = prune_to_count_batched(batched, None, num_to_keep=50)
    assert kept_weights(signal[0], one_shot, per_signal=True).tolist() == [50, 50, 50]
    for i in range(3):
        expected = prune_to_count(signal[i], None, num_to_keep=50)
        assert all(torch.equal(one_shot[n][i], expected[n]) for n in expected)


def test_batched_pruning_rejects_unbatched_masks_of_the_wrong_shape(make_params):
    batched = make_params((2, 16, 3), batch=2)
    with pytest.raises(ValueError):
        global_magnitude_prune_batched(batched, {"layers.0.weight": torch.ones(5, 16, 2)})
