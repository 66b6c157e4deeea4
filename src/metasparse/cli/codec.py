"""``metasparse compress | decompress | info | codec-build | rd``: the codec on the command line.

The verbs check options and output paths, then call :mod:`metasparse.codec` (imported inside each
command, so that ``metasparse --help`` does not import torch) and print what it returns.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Literal

import typer

from metasparse.cli.app import app
from metasparse.cli.console import (
    console,
    decay_rate,
    device_name,
    finite_positive,
    nearest_existing_folder,
    out,
)
from metasparse.errors import ConfigError, DataError, MetasparseError

EXTENSION = ".mspz"
STDOUT = "-"
# decompress's default --max-pixels: an 8,660x5,773 photo; about 150 MB of output image and a
# minute or two of decoding on a 2-core CPU (BENCHMARKS.md). The format itself allows 2^28.
DECOMPRESS_MAX_PIXELS = 50_000_000


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
    """Refuse, before any work is done, an output that could not be written at the end: a folder in
    its place, an existing file without ``--force``, a path under a regular file, a folder without
    write permission."""
    if target.is_dir():
        raise MetasparseError(f"output {target} is a folder; name a file, or end -o with / to write into it")
    if (target.exists() or target.is_symlink()) and not force:
        raise MetasparseError(f"{target} exists; pass --force to overwrite it or -o to write elsewhere")
    _check_folder_writable(target.parent, f"cannot write {target}")


def _check_folder_writable(folder: Path, what: str) -> None:
    """``folder``, or the nearest part of it that exists (the rest is created), is a folder we may write in."""
    existing, problem = nearest_existing_folder(folder)
    if problem == "file":
        raise MetasparseError(f"{what}: {existing} is a file, not a folder")
    if problem == "denied":
        raise MetasparseError(f"{what}: no permission to write in {existing}")


def _check_stdout(count: int, what: str) -> None:
    if count != 1:
        raise ConfigError(f"-o - writes one file to standard output; got {count} inputs (use -o FOLDER/)")
    if sys.stdout.isatty():
        raise ConfigError(f"not writing {what} to a terminal; redirect standard output (> FILE) or pass -o FILE")


def _publish(target: Path | None, data: bytes, force: bool) -> None:
    """Write an output atomically; ``None`` is standard output. Without ``force`` the file is only
    created, never replaced: another process that wrote the same name meanwhile keeps its file."""
    from metasparse.utils.fileio import write_atomic

    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetasparseError(f"cannot write {target}: cannot create its folder ({e.strerror or e})") from None
    try:
        write_atomic(target, data, overwrite=force)
    except FileExistsError:
        raise MetasparseError(f"{target} was created by another process while this one worked; it is kept "
                              f"(pass --force to overwrite it)") from None
    except OSError as e:
        raise MetasparseError(f"cannot write {target}: {e.strerror or e}") from None


def _image_format(target: Path) -> str:
    """The Pillow format an output image is written in, from its extension (checked before decoding)."""
    from PIL import Image

    image_format = Image.registered_extensions().get(target.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise ConfigError(f"{target}: cannot write images with extension {target.suffix!r}; use .png (lossless), "
                          f"or .webp, .tif, .bmp ...")
    return image_format


def _encoded_image(image, image_format: str) -> bytes:
    import io as _io

    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format=image_format)
    return buffer.getvalue()


def _check_reference_file(reference: Path) -> None:
    if not reference.exists():
        raise DataError(f"--original {reference}: no such file")
    if reference.is_dir():
        raise DataError(f"--original {reference} is a folder with no image of the file's name")
    if not os.access(reference, os.R_OK):
        raise DataError(f"--original {reference}: no permission to read it")


def _check_reference_matches(reference: Path, shape: tuple[int, ...], header) -> None:
    """The reference must have the size and channel count the file decodes to; the message says which differ."""
    height, width, channels = shape
    differences = []
    if (height, width) != (header.height, header.width):
        differences.append(f"its size is {width}x{height}, the file decodes to {header.width}x{header.height}")
    if channels != header.channels:
        differences.append(f"it has {channels} channel(s), the file decodes to {header.channels}")
    if differences:
        raise DataError(f"--original {reference} does not match: {'; '.join(differences)}")


@app.command()
def compress(
    images: list[Path] = typer.Argument(..., help="image files (PNG, JPEG, WebP, TIFF, BMP ...); "
                                        "'samples' for a few photos scikit-image installs"),
    output: str | None = typer.Option(None, "--output", "-o", help="output file, or folder (ends with / or "
                                      "exists, or several inputs); - for standard output (one input)"),
    model: str = typer.Option("default", "--model", "-m", help="bundled model name or a codec model file"),
    quality: int | None = typer.Option(None, "--quality", "-q", help="1 (smallest files) … N (best quality)"),
    device: str = typer.Option("cpu", "--device", callback=device_name,
                               help="cpu, cuda or auto (under torchrun: cuda:LOCAL_RANK)"),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite existing outputs"),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="leave outputs that exist and verify"),
    max_patches: int = typer.Option(4096, "--max-patches", help="patches fitted together (bounds memory)"),
) -> None:
    """Compress images to .mspz files (bpp, PSNR and time printed per file).

    Files are fitted together in chunks; a file's time is its reading, its share of the chunk's
    fitting (by its patches) and its writing. A codec model of another modality takes that
    modality's files instead (meshes for voxels and SDFs, .npy grids for the sphere;
    docs/modalities.md). Under torchrun every rank compresses its share of the files
    (docs/distributed.md).
    """
    from metasparse.codec.model import SignalCodec, chunks_by_patches
    from metasparse.codec.zoo import load_codec
    from metasparse.data.images import read_image
    from metasparse.data.samples import expand_inputs
    from metasparse.data.tiling import patch_grid
    from metasparse.training import distributed
    from metasparse.utils.device import rank_device

    rank, ranks, local_rank = distributed.env_world()
    to_stdout = output == STDOUT
    if to_stdout and ranks > 1:
        raise ConfigError("-o - writes one file to standard output, which torchrun's ranks cannot share")
    if to_stdout and skip_existing:
        raise ConfigError("--skip-existing checks output files; -o - writes to standard output")
    codec = load_codec(model, str(rank_device(device, local_rank, ranks)))
    if quality is not None and not 1 <= quality <= codec.num_qualities:
        raise ConfigError(f"--quality must be between 1 and {codec.num_qualities} for this model")
    if max_patches < 1:
        raise ConfigError("--max-patches must be at least 1")
    signals = isinstance(codec, SignalCodec)
    if output is None and any(str(p) == "samples" and not p.exists() for p in images):
        output = "compressed/"  # never write next to files inside an installed package
    images = images if signals else expand_inputs(images)
    if to_stdout:
        _check_stdout(len(images), "a compressed file")
    many = len(images) > 1
    jobs = []
    for source in images:
        if signals and source.is_dir():
            raise DataError(f"{source} is a folder; pass {codec.modality} files (e.g. a shell glob {source}/*)")
        target = None if to_stdout else _output_for(source, output, EXTENSION, many)
        if target is not None and target.resolve() == source.resolve():
            raise MetasparseError(f"output {target} would overwrite its input")
        jobs.append((source, target))
    if not to_stdout and len({t.resolve() for _, t in jobs}) < len(jobs):
        raise MetasparseError("two inputs would be written to the same output; give them different names")
    # Every rank sees the same list in the same order and takes every ranks-th file.
    jobs = distributed.shard(jobs, rank, ranks)
    wanted = codec.default_quality if quality is None else quality
    if skip_existing:
        jobs = _skip_verified(codec, jobs, wanted, force, console)
    for _, target in jobs:
        if target is not None:
            _check_writable(target, force)
    report = console if to_stdout else out  # standard output carries the file itself
    prefix = f"[rank {rank}/{ranks}] " if ranks > 1 else ""
    t0 = time.perf_counter()
    if signals:
        for source, target in jobs:
            _compress_signal(codec, source, target, wanted, prefix, force, report)
        what = "signal"
    else:
        # Chunks of files are fitted together and written before the next chunk is read, so
        # memory stays bounded and an interrupted run keeps every file it finished.
        for chunk in chunks_by_patches(jobs, codec.patch_size, max_patches, path_of=lambda job: job[0]):
            pictures, read_seconds = [], []
            for source, _ in chunk:
                t_read = time.perf_counter()
                pictures.append(read_image(source))
                read_seconds.append(time.perf_counter() - t_read)
            t_fit = time.perf_counter()
            results = codec.compress_images(pictures, wanted)
            fit_seconds = time.perf_counter() - t_fit
            grids = [patch_grid(p.shape[0], p.shape[1], codec.patch_size)[0] for p in pictures]
            patches = [rows * cols for rows, cols in grids]
            for (source, target), result, reading, share in zip(chunk, results, read_seconds, patches):
                t_write = time.perf_counter()
                _publish(target, result.data, force)
                seconds = reading + fit_seconds * share / sum(patches) + time.perf_counter() - t_write
                report.print(
                    f"{prefix}{source.name} → {target or 'standard output'}  {result.width}x{result.height}  "
                    f"{len(result.data):,} bytes  {result.bpp:.3f} bpp  PSNR {result.psnr:.2f} dB  "
                    f"quality {result.quality}/{codec.num_qualities}  {seconds:.2f} s",
                    markup=False, highlight=False,
                )
        what = "image"
    report.print(f"{prefix}{len(jobs)} {what}(s) in {time.perf_counter() - t0:.1f} s", markup=False,
                 highlight=False)

@app.command()
def decompress(
    files: list[Path] = typer.Argument(..., help=f"{EXTENSION} files"),
    output: str | None = typer.Option(None, "--output", "-o", help="output image (.png ...) or folder; "
                                      "- for standard output (one file, PNG)"),
    model: str = typer.Option("default", "--model", "-m",
                              help="the model the files were made with (a file made with another bundled model "
                                   "is decoded with that one)"),
    original: Path | None = typer.Option(None, "--original", help="original image (or folder) to report PSNR"),
    device: str = typer.Option("cpu", "--device", callback=device_name),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite existing outputs"),
    max_pixels: int = typer.Option(DECOMPRESS_MAX_PIXELS, "--max-pixels",
                                   help="refuse files of larger images (bounds decoding time and memory)"),
) -> None:
    """Decompress .mspz files to PNG images (signals of other modalities: .npy grids, .obj surfaces)."""
    from metasparse.codec.format.bitstream import unpack
    from metasparse.codec.model import SignalCodec
    from metasparse.codec.zoo import BUNDLED, bundled_name_for, load_codec
    from metasparse.data.images import read_image
    from metasparse.metrics import psnr

    if max_pixels < 1:
        raise ConfigError("--max-pixels must be at least 1")
    codec = load_codec(model, device)
    if isinstance(codec, SignalCodec):
        if original is not None:
            raise ConfigError("--original compares images; compress prints the PSNR of signals")
        if output == STDOUT:
            raise ConfigError(f"{codec.modality} signals decompress to .npy files; -o - is for images")
        _decompress_signals(codec, files, output, force)
        return
    to_stdout = output == STDOUT
    if to_stdout:
        _check_stdout(len(files), "an image")
    report = console if to_stdout else out
    many = len(files) > 1
    # Every output and reference is checked before the first file is decoded.
    plan = []
    for source in files:
        _check_compressed_file(source)
        target = None if to_stdout else _output_for(source, output, ".png", many)
        image_format = "PNG" if target is None else _image_format(target)
        if target is not None:
            _check_writable(target, force)
        reference = _reference_for(source, original)
        if reference is not None:
            _check_reference_file(reference)
        plan.append((source, target, image_format, reference))
    if not to_stdout and len({t.resolve() for _, t, _, _ in plan}) < len(plan):
        raise MetasparseError("two files would be decoded to the same output; give them different names")
    chosen, by_id = codec, {}  # a file's model id -> the bundled model that made it, looked up once per id
    for source, target, image_format, reference in plan:
        data = source.read_bytes()
        codec = chosen
        if model in BUNDLED:
            # A file made with an earlier bundled model (once the default) names it by its id.
            header = unpack(data, max_pixels=None)[0]
            made_with = header.model_id
            if not header.matches_model(chosen.model_id):
                if made_with not in by_id:
                    name = bundled_name_for(made_with)
                    by_id[made_with] = load_codec(name, device) if name else chosen
                codec = by_id[made_with]
        header = codec.read_header(data, max_pixels=None)
        if header.num_pixels > max_pixels:
            raise DataError(f"{source} holds a {header.width}x{header.height} image ({header.num_pixels:,} "
                            f"pixels), over --max-pixels {max_pixels:,}; raise --max-pixels to decode it")
        ref = None
        if reference is not None:
            ref = read_image(reference)
            _check_reference_matches(reference, ref.shape, header)
        t0 = time.perf_counter()
        image = codec.decompress(data, max_pixels=max_pixels)
        seconds = time.perf_counter() - t0
        _publish(target, _encoded_image(image, image_format), force)
        h, w = image.shape[:2]
        line = (f"{source.name} → {target or 'standard output'}  {w}x{h}  "
                f"{8 * len(data) / (h * w):.3f} bpp  {seconds:.2f} s")
        if ref is not None:
            line += f"  PSNR {psnr(ref, image):.2f} dB"
        report.print(line, markup=False, highlight=False)

@app.command()
def info(
    files: list[Path] = typer.Argument(..., help=f"{EXTENSION} files"),
    model: str | None = typer.Option(None, "--model", "-m", help="also say whether each file was made with this model"),
) -> None:
    """Show what a .mspz file holds (format, size, quality, rate) without decoding it."""
    from metasparse.codec.format.bitstream import container_bytes, unpack
    from metasparse.codec.zoo import load_codec

    codec = load_codec(model) if model is not None else None
    for source in files:
        _check_compressed_file(source)
        data = source.read_bytes()
        header, payload = unpack(data, max_pixels=None)
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
    network: Path = typer.Argument(..., help="a trained mscn-modulations model (model.safetensors or its run dir), "
                                              "or a codec model, whose network is rebuilt"),
    data: str = typer.Option(..., "--data", help="training images the quantisers and entropy models are fitted on"),
    split: str | None = typer.Option(None, "--split", help="named split of --data (e.g. train:0.15)"),
    output: Path = typer.Option(..., "--output", "-o", help="codec model file to write"),
    budgets: str = typer.Option("32,64,128,256", "--budgets", help="modulations per patch, one per quality"),
    patches: int = typer.Option(2048, "--patches", min=1, help="random training patches to fit"),
    steps: int = typer.Option(3, "--steps", min=0, help="encoder fitting steps"),
    optimizer: Literal["inner", "adam", "sgd"] = typer.Option("inner", "--optimizer",
                                                             help="inner (meta-learned rule), adam or sgd"),
    lr: float = typer.Option(1e-2, "--lr", callback=finite_positive, help="learning rate for adam/sgd"),
    clip_std: float = typer.Option(3.0, "--clip-std", callback=finite_positive,
                                   help="quantiser clipping range in standard deviations"),
    max_loss_db: float = typer.Option(0.5, "--max-quant-loss", min=0.0, help="PSNR the quantiser may cost (dB)"),
    ema_decay: float | None = typer.Option(None, "--ema-decay", callback=decay_rate,
                                           help="EMA of the encoder's iterates (MSCN App. D.2); off by default"),
    deblocking_crops: int = typer.Option(64, "--deblocking-crops", min=0,
                                         help="training crops of 4x4 patches the deblocking filter is tuned "
                                              "on (0: no filter)"),
    seed: int = typer.Option(0, "--seed", min=0),
    device: str = typer.Option("auto", "--device", callback=device_name),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite an existing output"),
) -> None:
    """Turn a trained network into a codec model: quantisers and entropy models per quality.

    Image networks are fitted on random patches of --data; networks of another modality
    (voxels, sdf3d, sphere, ...) on up to --patches whole signals of --data, on their grid.
    """


    from metasparse.codec.build import build_from_network, load_network, network_file
    from metasparse.meta.fit import FitConfig

    path = network_file(network)
    if output.resolve() == path.resolve():
        raise MetasparseError(f"output {output} would overwrite the trained network")
    _check_writable(output, force)
    try:  # a malformed option is reported before the network is read
        sizes = sorted(int(b) for b in budgets.split(","))
    except ValueError:
        raise ConfigError(f"--budgets must be comma-separated integers, got {budgets!r}") from None
    trained = load_network(path)
    encoder = FitConfig(steps=steps, optimizer=optimizer, lr=lr, batch_size=256, ema_decay=ema_decay)
    codec = build_from_network(trained, data, split, sizes, patches, encoder, clip_std=clip_std,
                               max_loss_db=max_loss_db, seed=seed, device=device, deblocking_crops=deblocking_crops,
                               log=lambda line: out.print(line, markup=False, highlight=False))
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
    device: str = typer.Option("cpu", "--device", callback=device_name),
    grid: bool = typer.Option(False, "--grid", help="also grid.png: the first image by our codec and by JPEG, "
                              "JPEG 2000 and AVIF at the closest rate not above ours"),
    grid_quality: int | None = typer.Option(None, "--grid-quality", min=1,
                                            help="our quality in the grid (default: the model's default)"),
) -> None:
    """Rate-distortion: PSNR and MS-SSIM vs real bpp for our codec and classical codecs."""
    from metasparse.codec.model import ImageCodec
    from metasparse.codec.rd import check_codec_names, equal_rate_grid, run_rd
    from metasparse.codec.zoo import load_codec
    from metasparse.data.samples import expand_inputs

    names = [c for c in codecs.split(",") if c]
    check_codec_names(names)
    if output.exists() and not output.is_dir():
        raise MetasparseError(f"-o {output} is a file; rd writes a folder of tables and a plot")
    _check_folder_writable(output, f"cannot write into {output}")
    codec = load_codec(model, device)
    if not isinstance(codec, ImageCodec):
        raise ConfigError(f"rd compares image codecs; {model} is a {codec.modality} model")
    if grid_quality is not None:
        codec.level(grid_quality)  # refused before any work when the model has no such quality
    source = data
    if data == "samples" and not Path(data).exists():  # the photos scikit-image installs
        source = [str(p) for p in expand_inputs([Path(data)])]
    run_rd(codec, source, output, split=split, limit=limit, codecs=names,
           log=lambda s: console.print(s, markup=False, highlight=False),
           label="samples" if source is not data else None)
    written = [output / "rd.csv", output / "rd_summary.csv", output / "rd.png"]
    if grid:
        from metasparse.data.images import load_image_list

        (first,), (name,) = load_image_list(source, split=split, limit=1)
        equal_rate_grid(codec, first.numpy(), grid_quality or codec.default_quality, output / "grid.png", name=name,
                        log=lambda s: console.print(s, markup=False, highlight=False))
        written.append(output / "grid.png")
    out.print("wrote " + ", ".join(map(str, written)), markup=False, highlight=False)


def _skip_verified(codec, jobs: list, quality: int, force: bool, console) -> list:
    """The jobs whose output does not exist yet or, with ``force``, exists but does not verify.

    An existing output that does not verify is reported as such, not as a file in the way."""
    to_do = []
    for source, target in jobs:
        if not (target.exists() or target.is_symlink()):
            to_do.append((source, target))
            continue
        problem = codec.verification_problem(target, quality)
        if problem is None:
            console.print(f"skip {target} (exists and verifies)", markup=False, highlight=False)
        elif force:
            to_do.append((source, target))
        else:
            raise MetasparseError(f"{target} exists but does not verify ({problem}); pass --force with "
                                  f"--skip-existing to replace it")
    return to_do


def _compress_signal(codec, source: Path, target: Path | None, quality: int, prefix: str, force: bool,
                     report) -> None:
    """One file of the codec's modality (a mesh, an ``.npy`` grid) to ``target`` (``None``: standard output)."""
    signals = codec.load_file(source)
    t0 = time.perf_counter()
    result = codec.compress_signals(signals, quality)[0]
    seconds = time.perf_counter() - t0
    metrics = codec.measure(signals, [result])
    _publish(target, result.data, force)
    extra = "".join(f"  {name} {values[0]:.4f}" for name, values in metrics.items())
    report.print(f"{prefix}{source.name} → {target or 'standard output'}  {len(result.data):,} bytes  "
                 f"{result.bits_per_value:.4f} bits/value  "
                 f"PSNR {result.psnr:.2f} dB{extra}  quality {result.quality}/{codec.num_qualities}  {seconds:.2f} s",
                 markup=False, highlight=False)


def _decompress_signals(codec, files: list[Path], output: str | None, force: bool) -> None:
    """``NAME.npy`` (values on the grid, stored units) and, for shapes, ``NAME.obj`` (marching cubes)."""
    import io as _io

    import numpy as np

    from metasparse.data.geometry import meshes

    many = len(files) > 1
    for source in files:
        _check_compressed_file(source)
        target = _output_for(source, output, ".npy", many)
        if target.suffix.lower() != ".npy":
            raise ConfigError(f"{codec.modality} signals decompress to .npy files, not {target.suffix}")
        _check_writable(target, force)
        if codec.has_surface:
            _check_writable(target.with_suffix(".obj"), force)
        t0 = time.perf_counter()
        values, surface = codec.decode_with_surface(source.read_bytes())
        seconds = time.perf_counter() - t0
        buffer = _io.BytesIO()
        np.save(buffer, values)
        _publish(target, buffer.getvalue(), force)
        line = f"{source.name} → {target}  grid {'x'.join(map(str, values.shape[:-1]))}  {seconds:.2f} s"
        if surface is not None:
            mesh = target.with_suffix(".obj")
            meshes.write_obj(mesh, *surface, comment=f"{source.name}: marching cubes at 0.5")
            line += f"  surface → {mesh}"
        out.print(line, markup=False, highlight=False)


def _reference_for(source: Path, original: Path | None) -> Path | None:
    if original is None:
        return None
    if str(original) == "samples" and not original.exists():
        from metasparse.data.samples import sample_dir

        original = sample_dir()
    if original.is_dir():
        matches = sorted(p for p in original.iterdir() if p.stem == source.stem and p.suffix.lower() != EXTENSION)
        if not matches:
            raise DataError(f"no original named {source.stem}.* in {original}")
        return matches[0]
    return original


__all__ = ["DECOMPRESS_MAX_PIXELS", "EXTENSION", "codec_build", "compress", "decompress", "info", "rd"]
