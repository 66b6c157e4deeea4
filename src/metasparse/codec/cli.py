"""``metasparse compress | decompress | rd | codec-build``: the image codec on the command line."""

from __future__ import annotations

import os
import sys
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


def read_image(path: str | os.PathLike[str]):
    """uint8 (H, W, C) with C = 1 for greyscale sources and 3 otherwise (alpha composited on white)."""
    from PIL import Image

    from ..data.images import load_image

    path = Path(path)
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
STDOUT = "-"
# decompress's default --max-pixels: an 8,660x5,773 photo; about 150 MB of output image and a
# minute or two of decoding on a 2-core CPU (BENCHMARKS.md). The format itself allows 2^28.
DEFAULT_MAX_PIXELS = 50_000_000


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
    """Refuse, before any work is done, an output that could not be written at the end: a folder in
    its place, an existing file without ``--force``, a path under a regular file, a folder without
    write permission."""
    if target.is_dir():
        raise MetasparseError(f"output {target} is a folder; name a file, or end -o with / to write into it")
    if (target.exists() or target.is_symlink()) and not force:
        raise MetasparseError(f"{target} exists; pass --force to overwrite it or -o to write elsewhere")
    _check_folder_writable(target.parent, f"cannot write {target}")


def _check_folder_writable(folder: Path, what: str) -> None:
    """``folder``, or the nearest part of it that exists (the rest is created), is a folder we may
    write in."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        raise MetasparseError(f"{what}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MetasparseError(f"{what}: no permission to write in {folder}")


def _check_stdout(count: int, what: str) -> None:
    if count != 1:
        raise ConfigError(f"-o - writes one file to standard output; got {count} inputs (use -o FOLDER/)")
    if sys.stdout.isatty():
        raise ConfigError(f"not writing {what} to a terminal; redirect standard output (> FILE) "
                          f"or pass -o FILE")


def _publish(target: Path | None, data: bytes, force: bool) -> None:
    """Write an output atomically; ``None`` is standard output. Without ``force`` the file is only
    created, never replaced: another process that wrote the same name meanwhile keeps its file."""
    from ..io import write_atomic

    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetasparseError(f"cannot write {target}: cannot create its folder "
                              f"({e.strerror or e})") from None
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
        raise ConfigError(f"{target}: cannot write images with extension {target.suffix!r}; "
                          f"use .png (lossless), or .webp, .tif, .bmp ...")
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
    """The reference must have the size and channel count the file decodes to; the message says
    which differ."""
    height, width, channels = shape
    differences = []
    if (height, width) != (header.height, header.width):
        differences.append(f"its size is {width}x{height}, "
                           f"the file decodes to {header.width}x{header.height}")
    if channels != header.channels:
        differences.append(f"it has {channels} channel(s), the file decodes to {header.channels}")
    if differences:
        raise DataError(f"--original {reference} does not match: {'; '.join(differences)}")


def _patch_count(shape, patch_size: int) -> int:
    return -(-shape[0] // patch_size) * -(-shape[1] // patch_size)


def register(app: typer.Typer) -> None:
    from ..cli import console, out

    @app.command()
    def compress(
        images: list[Path] = typer.Argument(..., help="image files (PNG, JPEG, WebP, TIFF, BMP ...); "
                                            "'samples' for a few photos scikit-image installs"),
        output: str | None = typer.Option(None, "--output", "-o", help="output file, or folder (ends with / or "
                                          "exists, or several inputs); - for standard output (one input)"),
        model: str = typer.Option("default", "--model", "-m", help="bundled model name or a codec model file"),
        quality: int | None = typer.Option(None, "--quality", "-q", help="1 (smallest files) … N (best quality)"),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto (under torchrun: cuda:LOCAL_RANK)"),
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
        from .. import distributed
        from .model import SignalCodec

        rank, ranks, local_rank = distributed.env_world()
        to_stdout = output == STDOUT
        if to_stdout and ranks > 1:
            raise ConfigError("-o - writes one file to standard output, which torchrun's ranks cannot share")
        if to_stdout and skip_existing:
            raise ConfigError("--skip-existing checks output files; -o - writes to standard output")
        codec = load_codec(model, str(distributed.rank_device(device, local_rank, ranks)))
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
            for chunk in _chunks_by_patches(jobs, codec.patch_size, max_patches):
                pictures, read_seconds = [], []
                for source, _ in chunk:
                    t_read = time.perf_counter()
                    pictures.append(read_image(source))
                    read_seconds.append(time.perf_counter() - t_read)
                t_fit = time.perf_counter()
                results = codec.compress_images(pictures, wanted)
                fit_seconds = time.perf_counter() - t_fit
                patches = [_patch_count(p.shape, codec.patch_size) for p in pictures]
                for (source, target), result, reading, share in zip(chunk, results, read_seconds, patches):
                    t_write = time.perf_counter()
                    _publish(target, result.data, force)
                    seconds = reading + fit_seconds * share / sum(patches) + time.perf_counter() - t_write
                    report.print(
                        f"{prefix}{source.name} → {target or 'standard output'}  "
                        f"{result.width}x{result.height}  "
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
        model: str = typer.Option("default", "--model", "-m", help="the model the files were made with"),
        original: Path | None = typer.Option(None, "--original", help="original image (or folder) to report PSNR"),
        device: str = typer.Option("cpu", "--device"),
        force: bool = typer.Option(False, "--force", "-f", help="overwrite existing outputs"),
        max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels",
                                       help="refuse larger images (bounds decoding time and memory)"),
    ) -> None:
        """Decompress .mspz files to PNG images (signals of other modalities: .npy grids, .obj surfaces)."""
        from ..metrics_image import psnr
        from .model import SignalCodec

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
        for source, target, image_format, reference in plan:
            data = source.read_bytes()
            header = codec.read_header(data, max_pixels=None)
            if header.num_pixels > max_pixels:
                raise DataError(f"{source} holds a {header.width}x{header.height} image "
                                f"({header.num_pixels:,} pixels), over --max-pixels {max_pixels:,}; "
                                f"raise --max-pixels to decode it")
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
        from .bitstream import container_bytes, unpack

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
        kind = trained.config.problem.kind
        if kind != "mscn-modulations":
            raise ModelError(f"{path} is a {kind} network, without the gated modulations a codec sends; "
                             f"codec-build needs an mscn-modulations network (e.g. the codec-photos preset)")
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
        from .rd import check_codec_names, run_rd

        names = [c for c in codecs.split(",") if c]
        check_codec_names(names)
        if output.exists() and not output.is_dir():
            raise MetasparseError(f"-o {output} is a file; rd writes a folder of tables and a plot")
        _check_folder_writable(output, f"cannot write into {output}")
        codec = load_codec(model, device)
        if not isinstance(codec, ImageCodec):
            raise ConfigError(f"rd compares image codecs; {model} is a {codec.modality} model")
        source = data
        if data == "samples" and not Path(data).exists():  # the photos scikit-image installs
            source = [str(p) for p in expand_inputs([Path(data)])]
        run_rd(codec, source, output, split=split, limit=limit, codecs=names,
               log=lambda s: console.print(s, markup=False, highlight=False),
               label="samples" if source is not data else None)
        out.print(f"wrote {output / 'rd.csv'}, {output / 'rd_summary.csv'}, {output / 'rd.png'}",
                  markup=False, highlight=False)


def _skip_verified(codec, jobs: list, quality: int, force: bool, console) -> list:
    """The jobs whose output does not exist yet or, with ``force``, exists but does not verify.

    An existing output that does not verify is reported as such, not as a file in the way."""
    to_do = []
    for source, target in jobs:
        if not (target.exists() or target.is_symlink()):
            to_do.append((source, target))
            continue
        problem = _verification_problem(codec, target, quality)
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
    """One file of the codec's modality (a mesh, an ``.npy`` grid) to ``target``: loaded as the
    model was trained (same modality, grid and options) but without the options that only multiply
    a training set (poses, rotations), so that a file is one signal, as stored."""
    import dataclasses

    from ..datasets import load_signal_set
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
    _publish(target, result.data, force)
    extra = "".join(f"  {name} {values[0]:.4f}" for name, values in metrics.items())
    report.print(f"{prefix}{source.name} → {target or 'standard output'}  {len(result.data):,} bytes  "
              f"{result.bits_per_value:.4f} bits/value  "
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
        _publish(target, buffer.getvalue(), force)
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


def _verification_problem(codec, target: Path, quality: int | None = None) -> str | None:
    """Why ``target`` is not a complete file of this model (and of ``quality``, when given);
    ``None`` if it is."""
    try:
        header = codec.read_header(target.read_bytes(), max_pixels=None)
    except BitstreamError as e:
        return str(e)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if quality is not None and header.quality_index != quality - 1:
        return f"it holds quality {header.quality_index + 1}, not {quality}"
    return None


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


__all__ = ["BUNDLED", "DEFAULT_MAX_PIXELS", "EXTENSION", "bundled_model_path", "load_codec", "read_image",
           "register"]
