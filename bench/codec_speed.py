"""Encoding and decoding time per image for the codec, beside JPEG and WebP measured in the same run.

    python bench/codec_speed.py [--model default] [--device cpu] [--image PATH] [--repeats 3]
    python bench/codec_speed.py --worst-file worst.mspz [--size 7071x7071]

Without ``--image`` the image is a 768x512 crop of scikit-image's ``rocket`` photo (the size the
project's CPU target is stated for: compress < 30 s, decompress < 2 s on a 2-core CPU).

``--worst-file`` writes, instead, the smallest valid file of an image of ``--size`` (width x
height): every patch at the lowest quality holding the most probable symbol at every position,
the fewest payload bits the decoder accepts for that many patches. Decoding it costs what the
largest image ``decompress`` accepts costs (7071x7071 is just under its default --max-pixels).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metasparse import load_codec
from metasparse.codec import baselines
from metasparse.codec.format.bitstream import Header, pack
from metasparse.codec.format.entropy import encode
from metasparse.data.images import load_image
from metasparse.data.samples import sample_images
from metasparse.data.tiling import patch_grid


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def worst_file(codec, width: int, height: int) -> bytes:
    """The smallest valid file of a ``width`` x ``height`` image (see the module docstring)."""
    level = codec.levels[0]
    frequencies = level.symbol_model.frequencies
    most_probable = np.broadcast_to(frequencies.argmax(axis=1), (level.budget,))
    (rows, columns), _ = patch_grid(height, width, codec.patch_size)
    symbols = np.tile(most_probable, (rows * columns, 1))
    header = Header(model_id=codec.model_id, height=height, width=width, channels=3, bit_depth=8,
                    patch_size=codec.patch_size, quality_index=0, quant_bits=level.quantizer.bits,
                    clip_std=level.quantizer.clip_std)
    return pack(header, encode(symbols, level.symbol_model), max_pixels=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--worst-file", default=None, help="write the smallest valid file of --size and stop")
    parser.add_argument("--size", default="7071x7071", help="width x height of --worst-file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worst_file:
        width, height = (int(v) for v in args.size.lower().split("x"))
        codec = load_codec(args.model)
        data = worst_file(codec, width, height)
        with open(args.worst_file, "wb") as file:
            file.write(data)
        codec.read_header(data, max_pixels=None)  # the decoder's checks accept it
        bpp = 8 * len(data) / (width * height)
        print(f"{args.worst_file}: {width}x{height}, {len(data):,} bytes, {bpp:.4f} bpp")
        return
    if args.image:
        image = load_image(args.image)
    else:
        rocket = sample_images("rocket")[0]
        padded = np.pad(rocket, ((0, max(0, 512 - rocket.shape[0])), (0, max(0, 768 - rocket.shape[1])), (0, 0)),
                        mode="edge")
        image = padded[:512, :768]
    codec = load_codec(args.model, args.device)
    h, w = image.shape[:2]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"codec speed on {w}x{h} ({device}, torch {torch.__version__})")
    print("| codec | setting | bpp | PSNR dB | encode s | decode s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for quality in range(1, codec.num_qualities + 1):
        result = codec.compress(image, quality)  # warm-up and the figures
        encode_s = best_of(lambda q=quality: codec.compress(image, q), args.repeats)
        decode_s = best_of(lambda r=result: codec.decompress(r.data), args.repeats)
        print(f"| metasparse | quality {quality} | {result.bpp:.3f} | {result.psnr:.2f} | {encode_s:.2f} | {decode_s:.2f} |")
    for name, quality in (("jpeg", 50), ("webp", 50)):
        if name in baselines.unavailable_codecs():
            continue
        decoded, size = baselines.encode_decode(name, image, quality)
        seconds = best_of(lambda n=name, q=quality: baselines.encode_decode(n, image, q), args.repeats)
        psnr = -10 * np.log10(np.mean((decoded / 255.0 - image / 255.0) ** 2))
        print(f"| {name} | quality {quality} | {8 * size / (h * w):.3f} | {psnr:.2f} | {seconds:.3f} (both) | |")


if __name__ == "__main__":
    main()
