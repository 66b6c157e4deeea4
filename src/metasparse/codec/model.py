"""The image codec: a meta-learned network with sparse shift modulations, turned into files.

Encoding an image (MSCN Section 5.3, COIN++ before it):

1. cut it into ``patch_size`` x ``patch_size`` patches (edge-padded at the bottom and right);
2. fit every patch at once from the meta-learned initialisation: the per-patch shifts ``m`` of a
   SIREN whose modulation gates ``z`` are shared by all signals; a quality level keeps the
   ``budget`` modulations with the largest gate locations ``log_alpha`` (one pattern for all
   patches, so positions are never sent);
3. quantise the kept shifts (training-set mean/std, clipped to ±R std, ``b`` bits) and range-code
   them with a per-modulation frequency model fitted on the training set;
4. write the container of :mod:`.bitstream`: header (model id, image size, patch size, quality,
   quantiser settings), payload, CRC32.

Decoding runs the network once per patch with the dequantised shifts. bpp is always
``8 * file size / pixels`` with the header included.

:class:`SignalCodec` does the same for a signal of any other modality (occupancy voxels, signed
distances, temperatures on the sphere): the signal is not cut into patches but fitted whole on the
grid the network was trained on, which the model file stores, coordinates included.

The model file (safetensors, no pickle) holds the meta-learned network, the quality levels
(budget, quantiser, symbol frequencies) and the encoder's fitting settings; its id (a hash of
everything the decoder depends on) is written into each file, so a file is never decoded with
the wrong model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.func import vmap

from metasparse.codec.format.bitstream import (
    DEFAULT_MAX_PIXELS,
    MAX_PATCH_SIZE,
    Header,
    clip_fits,
    model_id_from_parts,
    pack,
    stored_clip,
    unpack,
)
from metasparse.codec.format.deblock import Deblocking, deblock
from metasparse.codec.format.entropy import SymbolModel, decode, encode, estimated_bits
from metasparse.codec.format.quantize import Quantizer
from metasparse.config import RunConfig, build_problem
from metasparse.data.geometry import meshes
from metasparse.data.patches import to_patches
from metasparse.data.signals import SignalSet, grid_coordinates
from metasparse.data.tiling import patch_grid
from metasparse.errors import BitstreamError, ConfigError, DataError, MetasparseError, ModelError
from metasparse.meta.fit import FitConfig, fit_signals
from metasparse.metrics import psnr_from_mse
from metasparse.modalities.base import get_modality
from metasparse.modalities.loading import load_signal_set
from metasparse.nn.siren import build_model
from metasparse.utils import tensorfile as ckpt

CODEC_KIND = "image-codec"
SIGNAL_CODEC_KIND = "signal-codec"
CODEC_VERSION = 1
# A non-image signal travels as one patch that covers its grid (see SignalCodec.header_for).
SIGNAL_BIT_DEPTH = 16
# Coordinates the network is evaluated on at once when rendering (512 patches of 32x32).
RENDER_POINTS = 1 << 19
# Patches fitted at once by the encoder on a CPU (see ModulationCodec.fit_patches).
CPU_ENCODE_CHUNK = 16

__all__ = ["CompressedImage", "CompressedSignal", "ImageCodec", "ModulationCodec", "QualityLevel", "SignalCodec",
           "load_codec_file", "model_id_of"]


def model_id_of(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """A 16-byte id of a network: :func:`.format.bitstream.model_id_from_parts` over every tensor's
    name, dtype (``str(tensor.dtype)``, e.g. ``"torch.float32"``), shape and bytes.

    Any change to a weight, shape or dtype changes the id; dict order does not."""
    parts = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        parts[name] = (str(tensor.dtype), tuple(tensor.shape), tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return model_id_from_parts(parts)


@dataclass(frozen=True)
class QualityLevel:
    """One rate: how many modulations a patch sends, and how they are quantised and coded."""

    budget: int
    quantizer: Quantizer
    symbol_model: SymbolModel
    deblocking: Deblocking | None = None  # images only: the decoder's filter of patch borders


@dataclass
class CompressedImage:
    """What :meth:`ImageCodec.compress_images` returns per image."""

    data: bytes
    height: int
    width: int
    channels: int
    quality: int  # 1-based, as the CLI shows it
    reconstruction: np.ndarray  # uint8 (H, W, C): exactly what the decoder will produce
    psnr: float  # of the reconstruction against the input
    estimated_bytes: float  # ideal code length of the payload + container, for comparison only

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.height * self.width)


@dataclass
class CompressedSignal:
    """What :meth:`SignalCodec.compress_signals` returns per signal."""

    data: bytes
    name: str
    quality: int
    reconstruction: np.ndarray  # float32 (*grid, C) in stored units: exactly what the decoder produces
    psnr: float  # on the model's [0, 1] targets
    num_values: int  # grid points x channels

    @property
    def bits_per_value(self) -> float:
        return 8.0 * len(self.data) / self.num_values


class ModulationCodec:
    """The signal path shared by every codec: a meta-learned sparse-modulation network, quality
    levels (budget, quantiser, frequency model) and the encoder's fitting settings.

    Subclasses say what a signal is (image patches, or one whole grid) and what the header holds.
    """

    kind = ""

    def __init__(
        self,
        config: RunConfig,
        meta: dict[str, dict[str, torch.Tensor]],
        levels: Sequence[QualityLevel],
        encoder: FitConfig,
        coords: torch.Tensor,
        info: dict | None = None,
    ):
        if not build_problem(config).sends_sparse_code:
            raise ModelError(f"a codec needs an mscn-modulations network, got {config.problem.kind!r}")
        if not levels:
            raise ModelError("a codec needs at least one quality level")
        if coords.dim() != 2 or coords.shape[1] != config.model.in_dim:
            raise ModelError(f"coordinates of shape {tuple(coords.shape)} do not fit a network with "
                             f"{config.model.in_dim}-D inputs")
        self.config = config
        self.meta = {g: {k: v.detach().float().cpu() for k, v in d.items()} for g, d in meta.items()}
        self.levels = list(levels)
        self.encoder = encoder
        self.info = dict(info or {})
        self.device = torch.device("cpu")
        self._coords = coords.detach().float().cpu()
        self.channels = config.model.out_dim
        self.num_modulations = build_model(config.model).num_modulations
        for i, level in enumerate(self.levels):
            if not clip_fits(level.quantizer.clip_std):
                raise ModelError(f"quality {i + 1}: a clip of {level.quantizer.clip_std:g} std cannot be stored in "
                                 f"the file format (a positive float16, 6e-08 to 65504)")
            if not 1 <= level.budget <= self.num_modulations:
                raise ModelError(f"quality {i + 1}: budget {level.budget} outside [1, {self.num_modulations}]")
            if level.symbol_model.num_symbols != level.quantizer.num_symbols:
                raise ModelError(f"quality {i + 1}: {level.symbol_model.num_symbols} coded symbols for a "
                                 f"{level.quantizer.bits}-bit quantiser")
            if level.symbol_model.positions not in (1, level.budget):
                raise ModelError(f"quality {i + 1}: {level.symbol_model.positions} frequency tables for "
                                 f"{level.budget} modulations")
        default = self.info.get("default_quality")
        if default is not None and not (isinstance(default, int) and 1 <= default <= len(self.levels)):
            raise ModelError(f"invalid default quality {default!r}")
        self.model_id = self._model_id()

    # -- identity and levels ------------------------------------------------------------------
    def _identity_tensors(self) -> dict[str, torch.Tensor]:
        """What, besides the network and the levels, the decoder depends on."""
        return {}

    def _model_id(self) -> bytes:
        tensors = dict(ckpt.flatten(self.meta, "meta/"))
        # The network's architecture and gating decide what the shifts decode to, so they are part
        # of the id (the budget is the level's, set per quality).
        decoding = {"model": dataclasses.asdict(self.config.model),
                    "problem": dataclasses.asdict(dataclasses.replace(self.config.problem, target_count=None))}
        text = json.dumps(decoding, sort_keys=True).encode()
        tensors["config"] = torch.tensor(list(text), dtype=torch.uint8)
        for i, level in enumerate(self.levels):
            tensors[f"level{i}/frequencies"] = torch.tensor(level.symbol_model.frequencies)
            q = level.quantizer
            tensors[f"level{i}/quantizer"] = torch.tensor([q.mean, q.std, q.clip_std, q.bits, level.budget],
                                                          dtype=torch.float64)
            if level.deblocking is not None:  # absent from the ids of models made without it, which stay valid
                d = level.deblocking
                tensors[f"level{i}/deblocking"] = torch.tensor([d.threshold, d.span], dtype=torch.float64)
        tensors.update(self._identity_tensors())
        return model_id_of(tensors)

    @property
    def num_qualities(self) -> int:
        return len(self.levels)

    @property
    def default_quality(self) -> int:
        return int(self.info.get("default_quality", (self.num_qualities + 1) // 2))

    def level(self, quality: int) -> QualityLevel:
        if not 1 <= quality <= self.num_qualities:
            raise ConfigError(f"quality must be between 1 and {self.num_qualities} for this model, got {quality}")
        return self.levels[quality - 1]

    def to(self, device: str | torch.device) -> ModulationCodec:
        self.device = torch.device(device)
        self.meta = {g: {k: v.to(self.device) for k, v in d.items()} for g, d in self.meta.items()}
        self._coords = self._coords.to(self.device)
        return self

    def problem(self, budget: int):
        config = dataclasses.replace(self.config, problem=dataclasses.replace(self.config.problem, target_count=budget))
        return build_problem(config, None)

    def kept_indices(self, budget: int) -> torch.Tensor:
        """The modulations every patch sends at this budget (sorted: the shared sparsity pattern)."""
        return self.problem(budget).kept_modulations(self.meta).sort().values

    # -- the signal path -----------------------------------------------------------------------
    def fit_patches(self, patches: torch.Tensor, budget: int) -> torch.Tensor:
        """Adapted shifts ``(N, num_modulations)`` for signals ``(N, P, C)`` in [0, 1] on the codec's
        coordinates (``P`` points: a patch's pixels, or a whole grid)."""
        encoder = self.encoder
        if self.device.type == "cpu" and encoder.batch_size > CPU_ENCODE_CHUNK:
            # Patches are fitted independently, so the chunk changes no result, only speed: on a CPU a
            # large batch's elementwise passes leave the cache (256 patches: 2x slower than 16).
            encoder = dataclasses.replace(encoder, batch_size=CPU_ENCODE_CHUNK)
        result = fit_signals(self.problem(budget), self.meta, self._coords, patches, encoder)
        return result.fast["code"]

    def render(self, code: torch.Tensor, budget: int, points: int = RENDER_POINTS) -> torch.Tensor:
        """Signals ``(N, P, C)`` in [0, 1] from shifts ``(N, num_modulations)``, about ``points``
        coordinates at a time (512 patches of 32x32; a few whole voxel grids).

        The same shifts give the same values on every run: the decoder must produce exactly the
        pixels the encoder reported. On the CPU a matmul split over several intra-op threads can
        round differently from one run to the next (measured: a decoded 512x512 photo differed by one
        level in 0.3 % of its values, in about one run in six on a busy 2-core machine), so every
        chunk is rendered on one intra-op thread, and chunks run side by side on as many threads as
        torch was given. A patch's values do not depend on the chunk it is rendered in."""
        patches, coordinates = code.shape[0], self._coords.shape[0]
        problem = self.problem(budget)
        noise = problem.eval_noise(self.meta)
        predict = vmap(lambda f: problem.predict(f, self.meta, self._coords, noise))

        def render_chunk(start: int, size: int) -> torch.Tensor:
            with torch.no_grad():  # grad mode is per thread
                return predict({"code": code[start:start + size].to(self.device)}).clamp_(0, 1)

        if patches == 0:
            return code.new_zeros((0, coordinates, self.channels))
        if self.device.type != "cpu":
            chunk = max(1, points // coordinates)
            return torch.cat([render_chunk(start, chunk) for start in range(0, patches, chunk)])
        with _one_intra_op_thread() as workers:
            # The chunks in flight together hold about ``points`` coordinates, as one chunk did.
            chunk = max(1, min(points // (workers * coordinates), -(-patches // workers)))
            starts = range(0, patches, chunk)
            if workers == 1 or len(starts) == 1:
                return torch.cat([render_chunk(start, chunk) for start in starts])
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return torch.cat(list(pool.map(lambda start: render_chunk(start, chunk), starts)))

    def _dequantized_code(self, symbols: np.ndarray, level: QualityLevel) -> torch.Tensor:
        """Shifts ``(N, num_modulations)`` (float32, on the codec's device) from symbols ``(N, budget)``."""
        kept = self.kept_indices(level.budget).to(self.device)
        code = torch.zeros(symbols.shape[0], self.num_modulations, device=self.device)
        code[:, kept] = torch.from_numpy(level.quantizer.dequantize(symbols)).to(self.device)
        return code

    def _encode_targets(self, targets: torch.Tensor, level: QualityLevel) -> tuple[np.ndarray, torch.Tensor]:
        """Quantised symbols ``(N, budget)`` (int64) of ``targets`` (N, P, C) and what they decode to (N, P, C)."""
        code = self.fit_patches(targets, level.budget)
        kept = self.kept_indices(level.budget).to(self.device)
        symbols = level.quantizer.quantize(code[:, kept])
        return symbols, self.render(self._dequantized_code(symbols, level), level.budget)

    def _decode_symbols(self, header: Header, payload: bytes) -> tuple[np.ndarray, QualityLevel]:
        """The quantised symbols ``(num_patches, budget)`` of a verified header and its payload, and
        the quality level they belong to."""
        level = self._check_header(header)
        self._check_payload(header, payload, level)
        patches = header.num_patches
        symbols = decode(payload, patches * level.budget, level.symbol_model).reshape(patches, level.budget)
        return symbols, level

    def _check_payload(self, header: Header, payload: bytes, level: QualityLevel) -> None:
        """Refuse a payload too short for the patches the header announces, before anything of their
        size is allocated or rendered. No patch codes in fewer bits than the most probable symbol at
        every position, so a file asks for at most ``patch_size² / min_bits`` pixels per payload bit
        (the bundled model: 1,024 / 29.9 at quality 1, about 3.6 kB per megapixel): the work a file
        can ask for is bounded by its size."""
        patches = header.num_patches
        # A little slack: the coder's fixed-point probabilities and dropped trailing zero bytes can
        # make a real stream slightly shorter than the ideal code length of its symbols.
        if 8 * len(payload) + 64 < 0.99 * patches * _min_bits_per_patch(level):
            raise BitstreamError(f"corrupt file: {len(payload)} payload bytes cannot hold {patches} patches")

    def _rendered_chunks(self, symbols: np.ndarray, level: QualityLevel):
        """``(first patch, signals (n, P, C) in [0, 1])`` for consecutive chunks of the patches of
        ``symbols``, so that a large image is never held as one float array."""
        chunk = max(1, RENDER_POINTS // self._coords.shape[0])
        for start in range(0, symbols.shape[0], chunk):
            code = self._dequantized_code(symbols[start:start + chunk], level)
            yield start, self.render(code, level.budget)

    def read_header(self, data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Header:
        """The verified header of a file of this model, its payload checked against the patches it
        announces (``max_pixels=None``: no limit on the image size, nothing being decoded)."""
        header, payload = unpack(data, expected_model_id=self.model_id, max_pixels=max_pixels)
        self._check_payload(header, payload, self._check_header(header))
        return header

    def verification_problem(self, path: Path, quality: int | None = None) -> str | None:
        """Why the file at ``path`` is not a complete file of this model (and of ``quality``, when
        given); ``None`` if it is."""
        try:
            header = self.read_header(Path(path).read_bytes(), max_pixels=None)
        except BitstreamError as e:
            return str(e)
        except OSError as e:
            return f"cannot be read: {e.strerror or e}"
        if quality is not None and header.quality_index != quality - 1:
            return f"it holds quality {header.quality_index + 1}, not {quality}"
        return None

    def _check_header(self, header: Header) -> QualityLevel:
        if not header.quality_index < self.num_qualities:
            raise BitstreamError(f"quality index {header.quality_index} does not exist in this model")
        level = self.levels[header.quality_index]
        if (header.quant_bits != level.quantizer.bits
                or header.clip_std != stored_clip(level.quantizer.clip_std, header.version)):
            raise BitstreamError("quantisation settings in the file do not match the model's quality level")
        return level

    # -- persistence ----------------------------------------------------------------------------
    def _extra_info(self) -> dict:
        return {}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def save(self, path: str | Path) -> None:
        tensors = {"meta": self.meta, "levels": {
            str(i): {"frequencies": torch.tensor(level.symbol_model.frequencies)}
            for i, level in enumerate(self.levels)
        }}
        extra = self._extra_tensors()
        if extra:
            tensors["extra"] = {"codec": extra}
        info = {
            "kind": self.kind,
            "codec_version": CODEC_VERSION,
            "config": self.config.to_dict(),
            "encoder": dataclasses.asdict(self.encoder),
            "levels": [{"budget": lv.budget, "quantizer": lv.quantizer.to_dict(),
                        **({"deblocking": lv.deblocking.to_dict()} if lv.deblocking else {})} for lv in self.levels],
            "model_id": self.model_id.hex(),
            **self._extra_info(),
            **{k: v for k, v in self.info.items() if k not in ("kind", "config", "levels", "model_id")},
        }
        ckpt.save(path, {k: {kk: {n: t.cpu() for n, t in vv.items()} for kk, vv in v.items()} for k, v in tensors.items()},
                  info)

    @classmethod
    def load(cls, path: str | Path) -> ModulationCodec:
        """A codec model file; the class follows the file's kind (``ImageCodec.load`` refuses others)."""
        codec = load_codec_file(path)
        if cls is not ModulationCodec and not isinstance(codec, cls):
            raise ModelError(f"{path} is a {codec.kind} model, not an {cls.kind} model")
        return codec


class ImageCodec(ModulationCodec):
    """Compress images to bytes and back with a meta-learned sparse-modulation network."""

    kind = CODEC_KIND

    def __init__(
        self,
        config: RunConfig,
        meta: dict[str, dict[str, torch.Tensor]],
        levels: Sequence[QualityLevel],
        encoder: FitConfig,
        patch_size: int = 32,
        info: dict | None = None,
    ):
        if config.model.in_dim != 2 or config.model.out_dim != 3:
            raise ModelError("an image codec needs a network from 2-D coordinates to RGB")
        self.patch_size = int(patch_size)
        if not 1 <= self.patch_size <= MAX_PATCH_SIZE:
            raise ModelError(f"invalid patch size {patch_size!r}")
        super().__init__(config, meta, levels, encoder,
                         grid_coordinates((self.patch_size, self.patch_size)).reshape(-1, 2), info)

    def with_deblocking(self, settings: Sequence[Deblocking | None]) -> ImageCodec:
        """The same codec with a deblocking filter per quality level (``None``: none at that level)."""
        if len(settings) != self.num_qualities:
            raise ModelError(f"{len(settings)} deblocking settings for {self.num_qualities} quality levels")
        levels = [dataclasses.replace(level, deblocking=s) for level, s in zip(self.levels, settings)]
        codec = ImageCodec(self.config, self.meta, levels, self.encoder, self.patch_size, self.info)
        return codec.to(self.device)

    def _deblocked(self, image: np.ndarray, level: QualityLevel) -> np.ndarray:
        return image if level.deblocking is None else deblock(image, self.patch_size, level.deblocking)

    def _identity_tensors(self) -> dict[str, torch.Tensor]:
        return {"patch_size": torch.tensor([self.patch_size])}

    def _extra_info(self) -> dict:
        return {"patch_size": self.patch_size}

    # -- images <-> bytes ------------------------------------------------------------------------
    def compress(self, image: np.ndarray, quality: int | None = None) -> CompressedImage:
        return self.compress_images([image], quality)[0]

    def compress_images(self, images: Sequence[np.ndarray], quality: int | None = None) -> list[CompressedImage]:
        """Compress several uint8 images (H, W), (H, W, 1) or (H, W, 3); their patches are fitted together."""
        quality = self.default_quality if quality is None else int(quality)
        level = self.level(quality)
        prepared = [_as_rgb_uint8(im) for im in images]
        cut = [to_patches(torch.from_numpy(rgb), self.patch_size) for rgb, _ in prepared]
        counts = [p.shape[0] for p, _, _ in cut]
        patches = torch.cat([p for p, _, _ in cut]).to(self.device).reshape(sum(counts), -1, 3).float() / 255.0
        symbols, decoded = self._encode_targets(patches, level)
        results, start = [], 0
        for (rgb, channels), count in zip(prepared, counts):
            sym = symbols[start:start + count]
            header = Header(model_id=self.model_id, height=rgb.shape[0], width=rgb.shape[1], channels=channels,
                            bit_depth=8, patch_size=self.patch_size, quality_index=quality - 1,
                            quant_bits=level.quantizer.bits, clip_std=level.quantizer.clip_std)
            payload = encode(sym, level.symbol_model)
            data = pack(header, payload)
            image = np.empty((rgb.shape[0], rgb.shape[1], channels), dtype=np.uint8)
            self._place(image, decoded[start:start + count], 0)
            image = self._deblocked(image, level)
            reference = rgb if channels == 3 else rgb[:, :, :1]
            mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2) / 255.0**2
            results.append(CompressedImage(
                data=data, height=rgb.shape[0], width=rgb.shape[1], channels=channels, quality=quality,
                reconstruction=image, psnr=float(psnr_from_mse(torch.tensor(mse))),
                estimated_bytes=estimated_bits(sym, level.symbol_model) / 8 + (len(data) - len(payload)),
            ))
            start += count
        return results

    def _place(self, image: np.ndarray, rendered: torch.Tensor, first: int) -> None:
        """Write rendered patches ``(n, P*P, 3)`` in [0, 1], patches ``first``, ``first + 1`` ... of the
        image's raster order, into ``image`` (uint8 (H, W, C)), cropping the padding; greyscale is the
        mean of the three outputs. Works chunk by chunk, so no float copy of the image is ever made."""
        p = self.patch_size
        height, width, channels = image.shape
        (_, columns), _ = patch_grid(height, width, p)
        tiles = rendered.reshape(-1, p, p, 3)
        if channels == 1:
            tiles = tiles.mean(dim=3, keepdim=True)
        tiles = np.floor(tiles.cpu().numpy().astype(np.float64) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        for k, tile in enumerate(tiles):
            row, column = divmod(first + k, columns)
            y, x = row * p, column * p
            image[y:y + p, x:x + p] = tile[: height - y, : width - x]

    def _check_header(self, header: Header) -> QualityLevel:
        if header.patch_size != self.patch_size:
            raise BitstreamError(f"patch size {header.patch_size} does not match the model's {self.patch_size}")
        if header.channels not in (1, 3):
            raise BitstreamError(f"unsupported channel count {header.channels}")
        return super()._check_header(header)

    def decompress(self, data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """uint8 image (H, W, C) from a file's bytes; ``BitstreamError`` for anything wrong with them,
        including an image of more than ``max_pixels`` pixels (``None``: no limit).

        Memory: the image itself (uint8), the symbols, and one chunk of rendered patches at a time."""
        header, payload = unpack(data, expected_model_id=self.model_id, max_pixels=max_pixels)
        symbols, level = self._decode_symbols(header, payload)
        image = np.empty((header.height, header.width, header.channels), dtype=np.uint8)
        for start, rendered in self._rendered_chunks(symbols, level):
            self._place(image, rendered, start)
        return self._deblocked(image, level)


class SignalCodec(ModulationCodec):
    """Compress signals of a non-image modality, each fitted whole on the model's grid.

    The container is the image codec's: a signal is one patch covering its grid, whose first
    dimension is stored as the height and the product of the others as the width (a 32^3 voxel
    grid: 32 x 1,024, a 27-byte container); the decoder checks both against the model's grid.
    """

    kind = SIGNAL_CODEC_KIND

    def __init__(
        self,
        config: RunConfig,
        meta: dict[str, dict[str, torch.Tensor]],
        levels: Sequence[QualityLevel],
        encoder: FitConfig,
        coords: torch.Tensor,
        scale: float = 1.0,
        info: dict | None = None,
    ):
        """``coords``: the modality's grid ``(*grid, in_dim)``; ``scale``: stored value x scale = target."""
        if coords.dim() < 2:
            raise ModelError("a signal codec needs a coordinate grid (*grid, in_dim)")
        self.grid_shape = tuple(int(s) for s in coords.shape[:-1])
        self.scale = float(scale)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ModelError(f"invalid value scale {scale!r}")
        self.modality = config.data.modality
        if any(level.deblocking is not None for level in levels):
            raise ModelError("a signal codec has no patch borders to deblock")
        super().__init__(config, meta, levels, encoder, coords.reshape(-1, coords.shape[-1]), info)
        height, width = self._stored_size()
        if max(height, width) > MAX_PATCH_SIZE:
            raise ModelError(f"a grid of {self.grid_shape} is too large for the container (at most "
                             f"{MAX_PATCH_SIZE:,} along the first axis and in the product of the others)")

    def _stored_size(self) -> tuple[int, int]:
        return self.grid_shape[0], int(np.prod(self.grid_shape[1:], dtype=np.int64)) if len(self.grid_shape) > 1 else 1

    def _identity_tensors(self) -> dict[str, torch.Tensor]:
        return {"coords": self._coords.cpu(), "scale": torch.tensor([self.scale], dtype=torch.float64),
                "grid_shape": torch.tensor(self.grid_shape, dtype=torch.int64),
                "modality": torch.tensor(list(self.modality.encode()), dtype=torch.uint8)}

    def _extra_info(self) -> dict:
        return {"grid_shape": list(self.grid_shape), "scale": self.scale, "modality": self.modality}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"coords": self._coords.cpu()}

    def header_for(self, quality: int) -> Header:
        height, width = self._stored_size()
        level = self.level(quality)
        return Header(model_id=self.model_id, height=height, width=width, channels=self.channels,
                      bit_depth=SIGNAL_BIT_DEPTH, patch_size=max(height, width), quality_index=quality - 1,
                      quant_bits=level.quantizer.bits, clip_std=level.quantizer.clip_std)

    def load_file(self, source: Path) -> SignalSet:
        """One file of the codec's modality (a mesh, an ``.npy`` grid), loaded as the model was trained
        (same modality, grid and options) but without the options that only multiply a training set
        (poses, rotations), so that a file is one signal, as stored."""
        if not source.exists():
            raise DataError(f"{source}: no such file")
        transform = get_modality(self.modality).without_augmentations(self.config.data.transform)
        config = dataclasses.replace(self.config.data, path=str(source), split=None, limit=None, patch=None,
                                     transform=transform)
        signals = load_signal_set(config)
        if len(signals) != 1:
            raise DataError(f"{source} holds {len(signals)} {self.modality} signals; compress takes one per file")
        return signals

    def measure(self, signals: SignalSet, results: Sequence[CompressedSignal]) -> dict[str, np.ndarray]:
        """The modality's own measures (voxel accuracy, IoU, Chamfer ...) of what the files decode to."""
        measure = get_modality(self.modality).metrics
        if measure is None:
            return {}
        decoded = torch.from_numpy(np.stack([r.reconstruction for r in results])) * self.scale
        return measure(signals, decoded.reshape(len(results), -1, self.channels))

    @property
    def has_surface(self) -> bool:
        """Whether decoded signals are 3D shapes, written with a surface mesh beside their values."""
        return get_modality(self.modality).surface and len(self.grid_shape) == 3

    def decode_with_surface(self, data: bytes) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The decoded values and, for shapes, the marching-cubes surface at 0.5 (``None`` when there is
        none, or no surface crosses the grid)."""
        values = self.decompress(data)
        if not self.has_surface:
            return values, None
        return values, meshes.extract_surface(values[..., 0], 0.5, inside_above=self.modality == "voxels")

    def compress_signals(self, signals, quality: int | None = None) -> list[CompressedSignal]:
        """Compress a ``SignalSet`` on this codec's grid (one file's bytes per signal)."""
        if tuple(signals.grid_shape) != self.grid_shape or signals.channels != self.channels:
            raise DataError(f"signals on a {signals.grid_shape} grid with {signals.channels} channel(s) do not match "
                            f"this model's {self.grid_shape} grid with {self.channels}")
        if signals.modality != self.modality:
            raise DataError(f"this model compresses {self.modality} signals, not {signals.modality}")
        quality = self.default_quality if quality is None else int(quality)
        level = self.level(quality)
        targets = signals.targets().to(self.device)
        if not torch.isfinite(targets).all():
            raise DataError("the signals contain NaN or infinite values")
        symbols, decoded = self._encode_targets(targets, level)
        header = self.header_for(quality)
        names = signals.names or [f"signal{k}" for k in range(len(signals))]
        results = []
        for k in range(len(signals)):
            data = pack(header, encode(symbols[k:k + 1], level.symbol_model))
            mse = ((decoded[k] - targets[k]) ** 2).mean()
            results.append(CompressedSignal(data=data, name=names[k], quality=quality,
                                            reconstruction=self._to_stored(decoded[k]),
                                            psnr=float(psnr_from_mse(mse)), num_values=int(targets[k].numel())))
        return results

    def _to_stored(self, flat: torch.Tensor) -> np.ndarray:
        return (flat.detach().cpu().float() / self.scale).reshape(*self.grid_shape, self.channels).numpy()

    def _check_header(self, header: Header) -> QualityLevel:
        expected = self.header_for(1)
        fields = ("height", "width", "channels", "bit_depth", "patch_size")
        if any(getattr(header, f) != getattr(expected, f) for f in fields):
            raise BitstreamError(f"the file holds a {header.height}x{header.width} signal with {header.channels} "
                                 f"channel(s), not one on this model's {self.grid_shape} grid")
        return super()._check_header(header)

    def decompress(self, data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """float32 values (*grid, C) in stored units from a file's bytes (the grid is the model's;
        ``max_pixels`` is there for a signature shared with :meth:`ImageCodec.decompress`)."""
        header, payload = unpack(data, expected_model_id=self.model_id, max_pixels=max_pixels)
        symbols, level = self._decode_symbols(header, payload)
        code = self._dequantized_code(symbols, level)
        return self._to_stored(self.render(code, level.budget)[0])


def load_codec_file(path: str | Path) -> ModulationCodec:
    """An image or signal codec model from its file (safetensors + JSON; refuses anything else)."""
    flat, info = ckpt.load(path, "cpu")
    kind = info.get("kind")
    if kind not in (CODEC_KIND, SIGNAL_CODEC_KIND):
        raise ModelError(
            f"{path} is not a codec model (kind {kind!r}); "
            "make one from a trained network with `metasparse codec-build`"
        )
    if info.get("codec_version") != CODEC_VERSION:
        raise ModelError(f"{path}: unsupported codec model version {info.get('codec_version')!r}")
    try:
        config = RunConfig.from_dict(info["config"])
        meta = ckpt.unflatten(flat, "meta/")
        levels = []
        for i, spec in enumerate(info["levels"]):
            freq = flat[f"levels/{i}/frequencies"].numpy()
            deblocking = Deblocking.from_dict(spec["deblocking"]) if "deblocking" in spec else None
            levels.append(QualityLevel(int(spec["budget"]), Quantizer.from_dict(spec["quantizer"]),
                                       SymbolModel(freq), deblocking))
        encoder = FitConfig(**info["encoder"])
        rest = {k: v for k, v in info.items()
                if k not in ("config", "levels", "encoder", "format", "version", "grid_shape", "scale", "modality")}
        if kind == CODEC_KIND:
            codec = ImageCodec(config, meta, levels, encoder, int(info["patch_size"]), rest)
        else:
            coords = flat["extra/codec/coords"].reshape(*[int(s) for s in info["grid_shape"]], -1)
            codec = SignalCodec(config, meta, levels, encoder, coords, float(info["scale"]), rest)
    except MetasparseError as e:
        raise ModelError(f"{path}: invalid codec model ({e})") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: invalid codec model ({type(e).__name__}: {e})") from None
    stored = info.get("model_id")
    if stored is not None and stored != codec.model_id.hex():
        raise ModelError(f"{path}: the model's contents do not match its id (corrupt file)")
    return codec


@contextlib.contextmanager
def _one_intra_op_thread() -> Iterator[int]:
    """Run torch's CPU ops on one thread each (so that they round the same way on every run); yields
    how many threads torch had, which the caller may use side by side instead."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield 1
        return
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def _min_bits_per_patch(level: QualityLevel) -> float:
    frequencies = level.symbol_model.frequencies.astype(np.float64)
    best = -np.log2(frequencies.max(axis=1) / frequencies.sum(axis=1))
    if best.shape[0] == 1:
        return float(best[0] * level.budget)
    return float(best[: level.budget].sum())


def _as_rgb_uint8(image: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 and the channel count to restore (1 for greyscale)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise DataError(f"the codec takes 8-bit images, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise DataError(f"expected a greyscale or RGB image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"cannot compress an empty image of size {arr.shape[1]}x{arr.shape[0]}")
    channels = arr.shape[2]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = np.ascontiguousarray(arr)
    # A read-only array (np.asarray of a PIL image) would make torch warn about undefined behaviour.
    return (arr if arr.flags.writeable else arr.copy()), channels


def chunks_by_patches(items: Sequence, patch_size: int, max_patches: int,
                      path_of: Callable[[object], Path] = lambda item: item) -> Iterator[list]:
    """Consecutive groups of ``items`` whose images hold at most ``max_patches`` patches together
    (a larger image goes alone); sizes come from the file headers, nothing is decoded."""
    chunk, patches = [], 0
    for item in items:
        try:
            with Image.open(path_of(item)) as im:
                width, height = im.size
            (rows, cols), _ = patch_grid(height, width, patch_size)
            n = rows * cols
        except Exception:  # noqa: BLE001 - read_image reports the problem with the file as a DataError
            n = 1
        if chunk and patches + n > max_patches:
            yield chunk
            chunk, patches = [], 0
        chunk.append(item)
        patches += n
    if chunk:
        yield chunk
