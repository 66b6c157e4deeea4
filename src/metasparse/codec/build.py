"""Building a codec model from a trained mscn-modulations network (``metasparse codec-build``).

Per quality (a budget of kept modulations per patch or signal): fit the training signals, take the
kept shifts, pick the fewest quantiser bits whose quantisation costs at most a given PSNR, and fit
a per-modulation frequency model on their symbols (MSCN App. D.1, after COIN++). For images, the
decoder's deblocking filter (:mod:`.format.deblock`) is then tuned per quality on crops of several
patches of the training images.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from metasparse.codec.format.deblock import Deblocking, deblock
from metasparse.codec.format.entropy import SymbolModel, estimated_bits, fit_symbol_model
from metasparse.codec.format.quantize import Quantizer, fit_quantizer
from metasparse.codec.model import (
    CODEC_KIND,
    SIGNAL_CODEC_KIND,
    ImageCodec,
    ModulationCodec,
    QualityLevel,
    SignalCodec,
)
from metasparse.config import RunConfig, build_problem
from metasparse.data.images import load_image_list
from metasparse.data.patches import random_patches
from metasparse.errors import ConfigError, ModelError
from metasparse.meta.fit import FitConfig
from metasparse.metrics import psnr_from_mse, psnr_uint8
from metasparse.modalities.base import get_modality
from metasparse.modalities.loading import load_signal_set
from metasparse.training.model_file import MetaModel
from metasparse.utils.device import resolve_device

__all__ = ["build_codec", "build_from_network", "build_signal_codec", "load_network", "network_file",
           "tune_deblocking"]

# The deblocking settings tried per quality (threshold in 8-bit levels, span in pixels, at most half a
# patch), and the least gain on the training crops for which a level gets a filter at all.
DEBLOCKING_THRESHOLDS = (8.0, 16.0, 32.0, 64.0, 128.0, 255.0)
DEBLOCKING_SPANS = (1, 2, 3, 4, 6, 8)
MIN_DEBLOCKING_GAIN_DB = 0.01
DEBLOCKING_CROP_PATCHES = 4  # crops of 4x4 patches: 24 inner borders each


def network_file(network: Path) -> Path:
    """A trained network's model file: ``network`` itself, or the ``model.safetensors`` of a run directory."""
    return network / "model.safetensors" if network.is_dir() else network


def load_network(path: Path) -> MetaModel:
    """The trained network at ``path``; it must be one with the gated modulations a codec sends. A codec
    model holds its network too: the network is taken with its training step, the levels are not."""
    trained = MetaModel.load(path)
    if trained.info.get("kind") in (CODEC_KIND, SIGNAL_CODEC_KIND):
        trained = MetaModel(trained.config, trained.meta, trained.masks, dict(trained.info.get("trained") or {}))
    kind = trained.config.problem.kind
    if not build_problem(trained.config).sends_sparse_code:
        raise ModelError(f"{path} is a {kind} network, without the gated modulations a codec sends; "
                         f"codec-build needs an mscn-modulations network (e.g. the codec-photos preset)")
    return trained


def build_from_network(
    trained: MetaModel,
    data: str,
    split: str | None,
    budgets: Sequence[int],
    patches: int,
    encoder: FitConfig,
    clip_std: float = 3.0,
    max_loss_db: float = 0.5,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] = lambda s: None,
    deblocking_crops: int = 64,
) -> ModulationCodec:
    """A codec model of ``trained``, fitted on ``data``: for images, ``patches`` random patches of the
    photos (drawn with ``seed``), and the deblocking filter tuned on ``deblocking_crops`` random crops of
    4x4 patches (0: no filter); for other modalities, up to ``patches`` whole signals on their grid."""
    if encoder.ema_decay is not None and not 0 <= encoder.ema_decay < 1:
        raise ConfigError("--ema-decay must be in [0, 1)")
    info = {"trained": {k: v for k, v in trained.info.items() if k in ("step", "round")},
            "built_from": {"data": Path(data).name, "split": split, "patches": patches, "seed": seed}}
    common = {"clip_std": clip_std, "max_quantization_loss_db": max_loss_db, "info": info,
              "device": resolve_device(device), "log": log}
    if not get_modality(trained.config.data.modality).tiled:  # whole signals on their grid, not patches
        data_config = dataclasses.replace(trained.config.data, path=data, split=split, limit=patches)
        signals = load_signal_set(data_config)
        if len(signals) == 0:
            raise ConfigError(f"no {data_config.modality} signals in {data}")
        # Whole grids are large: fit as many at once as hold about 2^18 points.
        encoder = dataclasses.replace(encoder, batch_size=max(1, (1 << 18) // signals.num_points))
        return build_signal_codec(trained.config, trained.meta, signals, budgets, encoder, **common)
    patch = trained.config.data.patch or 32
    images, _ = load_image_list(data, split=split)
    crops = random_patches(images, patch, patches, torch.Generator().manual_seed(seed))
    if deblocking_crops:
        info["built_from"]["deblocking_crops"] = deblocking_crops
    codec = build_codec(trained.config, trained.meta, crops, budgets, encoder, patch_size=patch, **common)
    if not deblocking_crops:
        return codec
    # Another stream of the same seed: the crops do not depend on how many patches were drawn above.
    blocks = random_patches(images, DEBLOCKING_CROP_PATCHES * patch, deblocking_crops,
                            torch.Generator().manual_seed(seed + 1))
    return tune_deblocking(codec, [b.numpy() for b in blocks], log)


def tune_deblocking(codec: ImageCodec, images: Sequence[np.ndarray], log=lambda s: None) -> ImageCodec:
    """``codec`` with, per quality, the deblocking settings that give ``images`` (uint8 training images of
    several patches each) the highest mean PSNR; a level where none gains ``MIN_DEBLOCKING_GAIN_DB`` gets
    no filter. Tuned on training images only: the result is part of the model."""
    plain = codec.with_deblocking([None] * codec.num_qualities)
    originals = torch.from_numpy(np.stack(images))
    spans = [s for s in DEBLOCKING_SPANS if s <= codec.patch_size // 2]
    chosen: list[Deblocking | None] = []
    for quality in range(1, plain.num_qualities + 1):
        decoded = [r.reconstruction for r in plain.compress_images(images, quality)]

        def mean_psnr(settings: Deblocking | None, decoded=decoded) -> float:
            filtered = [d if settings is None else deblock(d.copy(), codec.patch_size, settings) for d in decoded]
            return float(psnr_uint8(torch.from_numpy(np.stack(filtered)), originals).mean())

        base = mean_psnr(None)
        scores = {(t, s): mean_psnr(Deblocking(t, s)) for t in DEBLOCKING_THRESHOLDS for s in spans}
        (threshold, span), best = max(scores.items(), key=lambda item: item[1])
        settings = Deblocking(threshold, span) if best - base >= MIN_DEBLOCKING_GAIN_DB else None
        chosen.append(settings)
        what = f"threshold {threshold:g}, span {span}" if settings else "none"
        log(f"quality {quality}: deblocking {what}: {base:.2f} → {max(best, base):.2f} dB on {len(images)} "
            f"training crops")
    return codec.with_deblocking(chosen)


def _uniform_model(num_symbols: int) -> SymbolModel:
    # A stand-in while a level's real model is being fitted (rendering does not use it).
    return fit_symbol_model(np.arange(num_symbols), num_symbols, per_position=False)


def build_codec(
    config: RunConfig,
    meta: dict[str, dict[str, torch.Tensor]],
    patches: torch.Tensor,
    budgets: Sequence[int],
    encoder: FitConfig,
    bits_choices: Sequence[int] = (3, 4, 5, 6, 7, 8),
    clip_std: float = 3.0,
    max_quantization_loss_db: float = 0.5,
    patch_size: int = 32,
    info: dict | None = None,
    device: str | torch.device = "cpu",
    log=lambda s: None,
) -> ImageCodec:
    """Make an image codec from a trained mscn-modulations network and uint8 training patches (N, P, P, 3).

    Per budget: fit the training patches, take the kept shifts, and pick the fewest bits whose
    quantisation costs at most ``max_quantization_loss_db`` of PSNR on these patches; then fit a
    per-modulation frequency model on their symbols.
    """
    _check_budgets(config, budgets)
    placeholder = _placeholder_levels(budgets, clip_std)
    codec = ImageCodec(config, meta, placeholder, encoder, patch_size, info).to(device)
    targets = patches.to(device).reshape(patches.shape[0], -1, 3).float() / 255.0
    levels = _fit_levels(codec, targets, budgets, bits_choices, clip_std, max_quantization_loss_db,
                         patch_size**2, "bpp", log)
    return ImageCodec(config, meta, levels, encoder, patch_size, info)


def build_signal_codec(
    config: RunConfig,
    meta: dict[str, dict[str, torch.Tensor]],
    signals,
    budgets: Sequence[int],
    encoder: FitConfig,
    bits_choices: Sequence[int] = (3, 4, 5, 6, 7, 8),
    clip_std: float = 3.0,
    max_quantization_loss_db: float = 0.5,
    info: dict | None = None,
    device: str | torch.device = "cpu",
    log=lambda s: None,
) -> SignalCodec:
    """Make a codec for ``signals`` (a ``SignalSet`` of training signals, whose grid it adopts)."""
    _check_budgets(config, budgets)
    placeholder = _placeholder_levels(budgets, clip_std)
    codec = SignalCodec(config, meta, placeholder, encoder, signals.coords, signals.scale, info).to(device)
    targets = signals.targets().to(device)
    levels = _fit_levels(codec, targets, budgets, bits_choices, clip_std, max_quantization_loss_db,
                         signals.num_points * signals.channels, "bits per value", log)
    return SignalCodec(config, meta, levels, encoder, signals.coords, signals.scale, info)


def _check_budgets(config: RunConfig, budgets: Sequence[int]) -> None:
    num_modulations = build_problem(config, None).model.num_modulations
    if not budgets:
        raise ConfigError("no budgets given: name the modulations per patch of each quality, e.g. 16,32,64")
    if any(a >= b for a, b in itertools.pairwise(budgets)):
        raise ConfigError(f"budgets must increase from one quality to the next, got {list(budgets)}")
    for b in budgets:
        if not 1 <= b <= num_modulations:
            raise ConfigError(f"budget {b} outside [1, {num_modulations}] modulations of this network")


def _placeholder_levels(budgets: Sequence[int], clip_std: float) -> list[QualityLevel]:
    return [QualityLevel(b, fit_quantizer(np.zeros(2), 8, clip_std), _uniform_model(256)) for b in budgets]


class _BitsCandidate(NamedTuple):
    quantizer: Quantizer
    model: SymbolModel
    psnr: float  # after quantisation, on the training signals
    bits_per_signal: float  # the symbol model's ideal code length


def _choose_bits(candidates: Iterable[_BitsCandidate], exact_psnr: float, max_loss_db: float,
                 previous_bits_per_signal: float) -> _BitsCandidate:
    """The fewest bits whose quantisation costs at most ``max_loss_db`` and whose rate exceeds the
    previous (smaller) budget's, so that a higher quality never makes a smaller file; the most bits
    when no candidate qualifies. ``candidates`` go from fewest to most bits and are made on demand."""
    chosen = None
    for candidate in candidates:
        chosen = candidate
        if exact_psnr - candidate.psnr <= max_loss_db and candidate.bits_per_signal > previous_bits_per_signal:
            break
    if chosen is None:
        raise ConfigError("no quantiser bit counts to choose from")
    return chosen


def _fit_levels(codec: ModulationCodec, targets: torch.Tensor, budgets, bits_choices, clip_std,
                max_quantization_loss_db, values_per_signal: int, unit: str, log) -> list[QualityLevel]:
    levels, previous_rate, previous_psnr, previous_budget = [], 0.0, -math.inf, None
    for budget in budgets:
        t0 = time.perf_counter()
        code = codec.fit_patches(targets, budget)
        kept = codec.kept_indices(budget).to(targets.device)
        values = code[:, kept].detach().cpu()
        exact = psnr_from_mse(((codec.render(code, budget) - targets) ** 2).mean()).item()

        def candidates(values=values, budget=budget):
            for bits in bits_choices:
                quantizer = fit_quantizer(values.reshape(-1), bits, clip_std)
                symbols = quantizer.quantize(values)
                trial = QualityLevel(budget, quantizer, _uniform_model(quantizer.num_symbols))
                recon = codec.render(codec._dequantized_code(symbols, trial), budget)
                model = fit_symbol_model(symbols, quantizer.num_symbols, per_position=True)
                yield _BitsCandidate(quantizer, model, psnr_from_mse(((recon - targets) ** 2).mean()).item(),
                                     estimated_bits(symbols, model) / symbols.shape[0])

        chosen = _choose_bits(candidates(), exact, max_quantization_loss_db, previous_rate)
        levels.append(QualityLevel(budget, chosen.quantizer, chosen.model))
        log(f"budget {budget}: {chosen.quantizer.bits} bits, train PSNR {exact:.2f} dB → {chosen.psnr:.2f} dB "
            f"quantised, ~{chosen.bits_per_signal / values_per_signal:.3f} {unit} ({time.perf_counter() - t0:.0f} s)")
        if chosen.bits_per_signal <= previous_rate:
            log(f"warning: budget {budget} costs no more bits per signal ({chosen.bits_per_signal:.1f}) than budget "
                f"{previous_budget} ({previous_rate:.1f}), even at {chosen.quantizer.bits} bits")
        elif chosen.psnr <= previous_psnr:
            log(f"note: budget {budget} costs more than budget {previous_budget} for no gain on the training "
                f"signals ({chosen.psnr:.2f} dB ≤ {previous_psnr:.2f} dB): this network saturates there")
        previous_rate, previous_psnr, previous_budget = chosen.bits_per_signal, chosen.psnr, budget
    return levels
