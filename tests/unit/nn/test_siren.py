import math

import pytest
import torch
from torch.func import functional_call, vmap  # noqa: F401

from metasparse.errors import ConfigError
from metasparse.nn.siren import ModelConfig, build_model


def test_paper_siren_parameter_counts():
    model = build_model(ModelConfig(width=256, depth=4, w0=200))
    params = model.init(torch.Generator().manual_seed(0))
    assert sum(v.numel() for v in params.values()) == 198_915
    assert model.num_weights() == 197_888
    assert sum(params[n].numel() for n in model.weight_names) == 197_888


def test_siren_init_bounds_follow_the_paper():
    model = build_model(ModelConfig(width=64, depth=3, w0=30))
    p = model.init(torch.Generator().manual_seed(0))
    assert p["layers.0.weight"].abs().max() <= 1 / 2
    assert p["layers.1.weight"].abs().max() <= math.sqrt(6 / 64) / 30
    # Not degenerate: close to the bound.
    assert p["layers.1.weight"].abs().max() > 0.9 * math.sqrt(6 / 64) / 30


def test_forward_matches_the_formula():
    model = build_model(ModelConfig(width=8, depth=2, w0=30, output_offset=0.5))
    p = model.init(torch.Generator().manual_seed(1))
    x = torch.rand(5, 2) * 2 - 1
    h = torch.sin(30 * (x @ p["layers.0.weight"].T + p["layers.0.bias"]))
    h = torch.sin(30 * (h @ p["layers.1.weight"].T + p["layers.1.bias"]))
    y = h @ p["layers.2.weight"].T + p["layers.2.bias"] + 0.5
    assert torch.allclose(model.apply(p, x), y, atol=1e-6)


def test_masks_and_shifts():
    model = build_model(ModelConfig(width=8, depth=2, w0=30))
    p = model.init(torch.Generator().manual_seed(1))
    x = torch.rand(5, 2)
    masks = {n: torch.zeros_like(p[n]) for n in model.weight_names}
    out = model.apply(p, x, masks=masks)
    assert torch.allclose(out, p["layers.2.bias"].expand(5, 3))
    shifts = torch.zeros(model.num_modulations)
    assert torch.allclose(model.apply(p, x, shifts=shifts), model.apply(p, x))
    shifts[0] = 1.0
    assert not torch.allclose(model.apply(p, x, shifts=shifts), model.apply(p, x))


def test_vmap_over_parameter_sets_equals_a_loop():
    model = build_model(ModelConfig(width=16, depth=2, w0=30))
    sets = [model.init(torch.Generator().manual_seed(s)) for s in range(3)]
    stacked = {k: torch.stack([s[k] for s in sets]) for k in sets[0]}
    x = torch.rand(7, 2)
    batched = vmap(lambda p: model.apply(p, x))(stacked)
    for i, s in enumerate(sets):
        assert torch.allclose(batched[i], model.apply(s, x), atol=1e-6)


def test_ffn_fixed_fourier_layer_is_reproducible_and_not_learned():
    cfg = ModelConfig(kind="ffn", width=16, depth=3, fourier_sigma=20)
    a, b = build_model(cfg), build_model(cfg)
    assert torch.equal(a.fourier, b.fourier)
    assert a.fourier.std() > 10
    p = a.init(torch.Generator().manual_seed(0))
    assert "layers.0.weight" not in p
    assert a.apply(p, torch.rand(4, 2)).shape == (4, 3)


@pytest.mark.parametrize("bad", [{"kind": "mlp"}, {"width": 0}, {"bias_init": "normal"}, {"kind": "ffn", "width": 15}])
def test_bad_model_configs_are_refused(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)
