"""``metasparse compress | decompress | rd | codec-build``: the image codec on the command line."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import BitstreamError, ConfigError, DataError, MetasparseError, ModelError

EXTENSION = ".mspz"
BUNDLED = {"default": "codec-default.safetensors"}


def bundled_model_path(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("metasparse") / "pretrained" / BUNDLED[name]))


def load_codec(model: str, device: str = "cpu"):
    """A bundled model by name, or a codec model file."""
    from ..training import resolve_device
    from .model import load_codec_file

    if model in BUNDLED:
        path = bundled_model_path(model)
        if not path.exists():
            raise ModelError(f"the bundled model {model!r} is missing from this installation ({path.name})")
    else:
        path = Path(model)
        if not path.exists():
            raise ModelError(f"no bundled model named {model!r} and no file at {path} (bundled: {', '.join(BUNDLED)})")
    return load_codec_file(path).to(resolve_device(device))


def read_image(path: Path):
    """uint8 (H, W, C) with C = 1 for greyscale sources and 3 otherwise (alpha composited on white)."""
    from PIL import Image

    from ..data.images import load_image

    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass image files (or a shell glob such as {path}/*.png)")
    try:
        with Image.open(path) as im:
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    except Exception:  # noqa: BLE001 - load_image reports the problem as a DataError
        grey = False
    return load_image(path, channels=1 if grey else 3)


SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def expand_inputs(paths: list[Path]) -> list[Path]:
    """``samples`` stands for a few photos that scikit-image installs (no download)."""
    from ..data import samples

    expanded: list[Path] = []
    for p in paths:
        if str(p) == "samples" and not p.exists():
            expanded += [samples.sample_dir() / samples.SAMPLE_FILES[n] for n in SAMPLE_PHOTOS
                         if (samples.sample_dir() / samples.SAMPLE_FILES[n]).is_file()]
        else:
            expanded.append(p)
    return expanded


def _output_for(source: Path, out: str | None, suffix: str, many: bool) -> Path:
    """Where ``source``'s output goes: ``-o`` names a file, or a folder when it exists, ends with a
    separator (kept because ``-o`` is taken as text, not a path) or there are several inputs."""
    if out is None:
        return source.with_suffix(suffix)
    folder = Path(out)
    if many or folder.is_dir() or str(out).endswith(("/", "\\")):
        return folder / (source.stem + suffix)
    return folder


def _check_compressed_file(source: Path) -> None:
    if not source.exists():
        raise DataError(f"{source}: no such file")
    if source.is_dir():
        raise DataError(f"{source} is a folder; pass {EXTENSION} files")


def _check_writable(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise MetasparseError(f"{target} exists; pass --force to overwrite it or -o to write elsewhere")


def register(app: typer.Typer) -> None:
    from ..cli import console, out

    @app.command()
    def compress(
        images: list[Path] = typer.Argument(..., help="image files (PNG, JPEG, WebP, TIFF, BMP ...); "
                                            "'samples' for a few photos scikit-image installs"),
        output: str | None = typer.Option(None, "--output", "-o", help="output file, or folder (ends with / or "
                                          "exists, or several inputs)"),
        model: str = typer.Option("default", "--model", "-m", help="bundled model name or a codec model file"),
        quality: int | None = typer.Option(None, "--quality", "-q", help="1 (smallest files) … N (best quality)"),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto (under torchrun: cuda:LOCAL_RANK)"),
        force: bool = typer.Option(False, "--force", "-f", help="overwrite existing outputs"),
        skip_existing: bool = typer.Option(False, "--skip-existing", help="leave outputs that exist and verify"),
        max_patches: int = typer.Option(4096, "--max-patches", help="patches fitted together (bounds memory)"),
    ) -> None:
        """Compress images to .mspz files (bpp and PSNR printed per file).

        A codec model of another modality takes that modality's files instead (meshes for voxels
        and SDFs, .npy grids for the sphere; docs/modalities.md). Under torchrun every rank
        compresses its share of the files (docs/distributed.md).
        """
        from .. import distributed
        from ..io import write_atomic
        from .model import SignalCodec

        rank, ranks, local_rank = distributed.env_world()
        codec = load_codec(model, str(distributed.rank_device(device, local_rank, ranks)))
        if quality is not None and not 1 <= quality <= codec.num_qualities:
            raise ConfigError(f"--quality must be between 1 and {codec.num_qualities} for this model")
        if max_patches < 1:
            raise ConfigError("--max-patches must be at least 1")
        signals = isinstance(codec, SignalCodec)
        if output is None and any(str(p) == "samples" and not p.exists() for p in images):
            output = "compressed/"  # never write next to files inside an installed package
        images = images if signals else expand_inputs(images)
        many = len(images) > 1
        jobs = []
        for source in images:
            if signals and source.is_dir():
                raise DataError(f"{source} is a folder; pass {codec.modality} files (e.g. a shell glob {source}/*)")
            target = _output_for(source, output, EXTENSION, many)
            if target.resolve() == source.resolve():
                raise MetasparseError(f"output {target} would overwrite its input")
            jobs.append((source, target))
        if len({t.resolve() for _, t in jobs}) < len(jobs):
            raise MetasparseError("two inputs would be written to the same output; give them different names")
        # Every rank sees the same list in the same order and takes every ranks-th file.
        jobs = distributed.shard(jobs, rank, ranks)
        wanted = codec.default_quality if quality is None else quality
        if skip_existing:
            jobs, skipped = distributed.skip_existing(jobs, lambda path: _verifies(codec, path, wanted))
            for _, target in skipped:
                console.print(f"skip {target} (exists and verifies)", markup=False, highlight=False)
        for _, target in jobs:
            _check_writable(target, force)
        prefix = f"[rank {rank}/{ranks}] " if ranks > 1 else ""
        t0 = time.perf_counter()
        if signals:
            for source, target in jobs:
                _compress_signal(codec, source, target, wanted, prefix)
            what = "signal"
        else:
            # Chunks of files are fitted together and written before the next chunk is read, so
            # memory stays bounded and an interrupted run keeps every file it finished.
            for chunk in _chunks_by_patches(jobs, codec.patch_size, max_patches):
                pictures = [read_image(s) for s, _ in chunk]
                t_chunk = time.perf_counter()
                results = codec.compress_images(pictures, wanted)
                seconds = (time.perf_counter() - t_chunk) / len(chunk)
                for (source, target), result in zip(chunk, results):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(target, result.data)
                    out.print(
                        f"{prefix}{source.name} → {target}  {result.width}x{result.height}  "
                        f"{len(result.data):,} bytes  {result.bpp:.3f} bpp  PSNR {result.psnr:.2f} dB  "
                        f"quality {result.quality}/{codec.num_qualities}  {seconds:.2f} s",
                        markup=False, highlight=False,
                    )
            what = "image"
        out.print(f"{prefix}{len(jobs)} {what}(s) in {time.perf_counter() - t0:.1f} s", markup=False, highlight=False)

    @app.command()
    def decompress(
        files: list[Path] = typer.Argument(..., help=f"{EXTENSION} files"),
        output: str | None = typer.Option(None, "--output", "-o", help="output image (.png ...) or folder"),
        model: str = typer.Option("default", "--model", "-m", help="the model the files were made with"),
        original: Path | None = typer.Option(None, "--original", help="original image (or folder) to report PSNR"),
        device: str = typer.Option("cpu", "--device"),
        force: bool = typer.Option(False, "--force", "-f", help="overwrite existing outputs"),
    ) -> None:
        """Decompress .mspz files to PNG images (signals of other modalities: .npy grids, .obj surfaces)."""
        from ..data.images import save_image
        from ..metrics_image import psnr
        from .model import SignalCodec

        codec = load_codec(model, device)
        if isinstance(codec, SignalCodec):
            if original is not None:
                raise ConfigError("--original compares images; compress prints the PSNR of signals")
            _decompress_signals(codec, files, output, force)
            return
        many = len(files) > 1
        for source in files:
            _check_compressed_file(source)
            target = _output_for(source, output, ".png", many)
            _check_writable(target, force)
            t0 = time.perf_counter()
            image = codec.decompress(source.read_bytes())
            seconds = time.perf_counter() - t0
            save_image(target, image)
            h, w = image.shape[:2]
            line = f"{source.name} → {target}  {w}x{h}  {8 * source.stat().st_size / (h * w):.3f} bpp  {seconds:.2f} s"
            reference = _reference_for(source, original)
            if reference is not None:
                ref = read_image(reference)
                if ref.shape != image.shape:
                    raise DataError(f"{reference} is {ref.shape[1]}x{ref.shape[0]}, the file decodes to {w}x{h}")
                line += f"  PSNR {psnr(ref, image):.2f} dB"
            out.print(line, markup=False, highlight=False)

    @app.command()
    def info(
        files: list[Path] = typer.Argument(..., help=f"{EXTENSION} files"),
        model: str | None = typer.Option(None, "--model", "-m", help="also say whether each file was made with this model"),
    ) -> None:
        """Show what a .mspz file holds (format, size, quality, rate) without decoding it."""
        from .bitstream import container_bytes, unpack

        codec = load_codec(model) if model is not None else None
        for source in files:
            _check_compressed_file(source)
            data = source.read_bytes()
            header, payload = unpack(data)
            line = (f"{source.name}: format {header.version}, {header.width}x{header.height}, "
                    f"{header.channels} channel(s), {header.bit_depth}-bit source, {header.patch_size}-pixel patches "
                    f"({header.num_patches:,}), quality {header.quality_index + 1}, {header.quant_bits}-bit shifts "
                    f"clipped at ±{header.clip_std:g} std; {len(data):,} bytes = {container_bytes(header)} container "
                    f"+ {len(payload):,} payload, {8 * len(data) / header.num_pixels:.3f} bpp; "
                    f"model {header.model_id.hex()}")
            if codec is not None:
                line += ": made with this model" if header.matches_model(codec.model_id) else ": NOT made with this model"
            out.print(line, markup=False, highlight=False)

    @app.command("codec-build")
    def codec_build(
        network: Path = typer.Argument(..., help="a trained mscn-modulations model (model.safetensors or its run dir)"),
        data: str = typer.Option(..., "--data", help="training images the quantisers and entropy models are fitted on"),
        split: str | None = typer.Option(None, "--split", help="named split of --data (e.g. train:0.15)"),
        output: Path = typer.Option(..., "--output", "-o", help="codec model file to write"),
        budgets: str = typer.Option("32,64,128,256", "--budgets", help="modulations per patch, one per quality"),
        patches: int = typer.Option(2048, "--patches", help="random training patches to fit"),
        steps: int = typer.Option(3, "--steps", help="encoder fitting steps"),
        optimizer: str = typer.Option("inner", "--optimizer", help="inner (meta-learned rule), adam or sgd"),
        lr: float = typer.Option(1e-2, "--lr", help="learning rate for adam/sgd"),
        clip_std: float = typer.Option(3.0, "--clip-std", help="quantiser clipping range in standard deviations"),
        max_loss_db: float = typer.Option(0.5, "--max-quant-loss", help="PSNR the quantiser may cost (dB)"),
        ema_decay: float | None = typer.Option(None, "--ema-decay", help="EMA of the encoder's iterates "
                                                "(MSCN App. D.2); off by default"),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device"),
        force: bool = typer.Option(False, "--force", "-f", help="overwrite an existing output"),
    ) -> None:
        """Turn a trained network into a codec model: quantisers and entropy models per quality.

        Image networks are fitted on random patches of --data; networks of another modality
        (voxels, sdf3d, sphere, ...) on up to --patches whole signals of --data, on their grid.
        """
        import dataclasses

        import torch

        from ..data.images import load_image_list
        from ..data.patches import random_patches
        from ..datasets import load_signal_set
        from ..meta.fit import FitConfig
        from ..training import MetaModel, resolve_device
        from .model import build_codec, build_signal_codec

        path = network / "model.safetensors" if network.is_dir() else network
        if output.resolve() == path.resolve():
            raise MetasparseError(f"output {output} would overwrite the trained network")
        _check_writable(output, force)
        trained = MetaModel.load(path)
        try:
            sizes = sorted(int(b) for b in budgets.split(","))
        except ValueError:
            raise ConfigError(f"--budgets must be comma-separated integers, got {budgets!r}") from None
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ConfigError("--ema-decay must be in [0, 1)")
        encoder = FitConfig(steps=steps, optimizer=optimizer, lr=lr, batch_size=256, ema_decay=ema_decay)
        info = {"trained": {k: v for k, v in trained.info.items() if k in ("step", "round")},
                "built_from": {"data": Path(data).name, "split": split, "patches": patches, "seed": seed}}
        log = lambda s: out.print(s, markup=False, highlight=False)
        common = {"clip_std": clip_std, "max_quantization_loss_db": max_loss_db, "info": info,
                  "device": resolve_device(device), "log": log}
        if trained.config.data.modality != "image":
            data_config = dataclasses.replace(trained.config.data, path=data, split=split, limit=patches)
            signals = load_signal_set(data_config)
            if len(signals) == 0:
                raise ConfigError(f"no {data_config.modality} signals in {data}")
            # Whole grids are large: fit as many at once as hold about 2^18 points.
            encoder = dataclasses.replace(encoder, batch_size=max(1, (1 << 18) // signals.num_points))
            codec = build_signal_codec(trained.config, trained.meta, signals, sizes, encoder, **common)
        else:
            patch = trained.config.data.patch or 32
            images, _ = load_image_list(data, split=split)
            crops = random_patches(images, patch, patches, torch.Generator().manual_seed(seed))
            codec = build_codec(trained.config, trained.meta, crops, sizes, encoder, patch_size=patch, **common)
        codec.save(output)
        out.print(f"codec model: {output} ({output.stat().st_size:,} bytes, {codec.num_qualities} qualities)",
                  markup=False, highlight=False)

    @app.command()
    def rd(
        data: str = typer.Option(..., "--data", help="folder, image file or .npz of test images; "
                                 "'samples' for the photos scikit-image installs"),
        split: str | None = typer.Option(None, "--split", help="named split of --data"),
        limit: int | None = typer.Option(None, "--limit", help="use the first N images"),
        model: str = typer.Option("default", "--model", "-m"),
        codecs: str = typer.Option("jpeg,jpeg2000,webp,avif,hevc,jpegxl", "--codecs",
                                   help="classical codecs to compare with (those not installed are skipped)"),
        output: Path = typer.Option(Path("rd"), "--output", "-o", help="folder for rd.csv, rd_summary.csv, rd.png"),
        device: str = typer.Option("cpu", "--device"),
    ) -> None:
        """Rate-distortion: PSNR and MS-SSIM vs real bpp for our codec and classical codecs."""
        from .model import ImageCodec
        from .rd import run_rd

        codec = load_codec(model, device)
        if not isinstance(codec, ImageCodec):
            raise ConfigError(f"rd compares image codecs; {model} is a {codec.modality} model")
        source = data
        if data == "samples" and not Path(data).exists():  # the photos scikit-image installs
            source = [str(p) for p in expand_inputs([Path(data)])]
        run_rd(codec, source, output, split=split, limit=limit, codecs=[c for c in codecs.split(",") if c],
               log=lambda s: console.print(s, markup=False, highlight=False),
               label="samples" if source is not data else None)
        out.print(f"wrote {output / 'rd.csv'}, {output / 'rd_summary.csv'}, {output / 'rd.png'}",
                  markup=False, highlight=False)


def _compress_signal(codec, source: Path, target: Path, quality: int, prefix: str) -> None:
    """One file of the codec's modality (a mesh, an ``.npy`` grid) to ``target``: loaded as the
    model was trained (same modality, grid and options) but without the options that only multiply
    a training set (poses, rotations), so that a file is one signal, as stored."""
    import dataclasses

    from ..cli import out
    from ..datasets import load_signal_set
    from ..io import write_atomic
    from ..modality import get_modality

    if not source.exists():
        raise DataError(f"{source}: no such file")
    transform = get_modality(codec.modality).without_augmentations(codec.config.data.transform)
    config = dataclasses.replace(codec.config.data, path=str(source), split=None, limit=None, patch=None,
                                 transform=transform)
    signals = load_signal_set(config)
    if len(signals) != 1:
        raise DataError(f"{source} holds {len(signals)} {codec.modality} signals; compress takes one per file")
    t0 = time.perf_counter()
    result = codec.compress_signals(signals, quality)[0]
    seconds = time.perf_counter() - t0
    metrics = _signal_metrics(codec, signals, [result])
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, result.data)
    extra = "".join(f"  {name} {values[0]:.4f}" for name, values in metrics.items())
    out.print(f"{prefix}{source.name} → {target}  {len(result.data):,} bytes  {result.bits_per_value:.4f} bits/value  "
              f"PSNR {result.psnr:.2f} dB{extra}  quality {result.quality}/{codec.num_qualities}  {seconds:.2f} s",
              markup=False, highlight=False)


def _signal_metrics(codec, signals, results) -> dict:
    """The modality's own measures (voxel accuracy, IoU, Chamfer ...) of what the files decode to."""
    import numpy as np
    import torch

    from ..modality import get_modality

    measure = get_modality(codec.modality).metrics
    if measure is None:
        return {}
    decoded = torch.from_numpy(np.stack([r.reconstruction for r in results])) * codec.scale
    return measure(signals, decoded.reshape(len(results), -1, codec.channels))


def _decompress_signals(codec, files: list[Path], output: str | None, force: bool) -> None:
    """``NAME.npy`` (values on the grid, stored units) and, for shapes, ``NAME.obj`` (marching cubes)."""
    import io as _io

    import numpy as np

    from ..cli import out
    from ..data import meshes
    from ..io import write_atomic

    many = len(files) > 1
    for source in files:
        _check_compressed_file(source)
        target = _output_for(source, output, ".npy", many)
        if target.suffix.lower() != ".npy":
            raise ConfigError(f"{codec.modality} signals decompress to .npy files, not {target.suffix}")
        _check_writable(target, force)
        shape = codec.modality in ("voxels", "sdf3d") and len(codec.grid_shape) == 3
        if shape:
            _check_writable(target.with_suffix(".obj"), force)
        t0 = time.perf_counter()
        values = codec.decompress(source.read_bytes())
        seconds = time.perf_counter() - t0
        buffer = _io.BytesIO()
        np.save(buffer, values)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, buffer.getvalue())
        line = f"{source.name} → {target}  grid {'x'.join(map(str, values.shape[:-1]))}  {seconds:.2f} s"
        if shape:
            surface = meshes.extract_surface(values[..., 0], 0.5, inside_above=codec.modality == "voxels")
            if surface is not None:
                mesh = target.with_suffix(".obj")
                meshes.write_obj(mesh, *surface, comment=f"{source.name}: marching cubes at 0.5")
                line += f"  surface → {mesh}"
        out.print(line, markup=False, highlight=False)


def _chunks_by_patches(jobs: list, patch_size: int, max_patches: int):
    """Consecutive groups of jobs whose images hold at most ``max_patches`` patches together
    (a larger image goes alone); sizes come from the file headers, nothing is decoded."""
    from PIL import Image

    chunk, patches = [], 0
    for job in jobs:
        try:
            with Image.open(job[0]) as im:
                w, h = im.size
            n = -(-h // patch_size) * -(-w // patch_size)
        except Exception:  # noqa: BLE001 - read_image reports the problem with the file as a DataError
            n = 1
        if chunk and patches + n > max_patches:
            yield chunk
            chunk, patches = [], 0
        chunk.append(job)
        patches += n
    if chunk:
        yield chunk


def _verifies(codec, target: Path, quality: int | None = None) -> bool:
    """Whether ``target`` is a complete file of this model (and of ``quality``, when given)."""
    if not target.exists():
        return False
    try:
        header = codec.read_header(target.read_bytes())
    except (BitstreamError, OSError):
        return False
    return quality is None or header.quality_index == quality - 1


def _reference_for(source: Path, original: Path | None) -> Path | None:
    if original is None:
        return None
    if str(original) == "samples" and not original.exists():
        from ..data.samples import sample_dir

        original = sample_dir()
    if original.is_dir():
        matches = sorted(p for p in original.iterdir() if p.stem == source.stem and p.suffix.lower() != EXTENSION)
        if not matches:
            raise DataError(f"no original named {source.stem}.* in {original}")
        return matches[0]
    return original


__all__ = ["BUNDLED", "EXTENSION", "bundled_model_path", "load_codec", "read_image", "register"]
