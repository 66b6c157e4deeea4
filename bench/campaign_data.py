"""Copy the codec's training images into a small folder that a lent GPU machine can receive.

    python bench/campaign_data.py --data-root DATA --out campaign-data            # about 50 MB

Takes the photos of the ``codec-photos`` split (``train:0.15`` of ``DATA/photos``; the held-out
validation photos never leave) re-encoded as JPEG quality 95, and the first ``--per-class`` images of
each class of ``DATA/imagenette/train`` as they are. Pass the folder to ``bench/gpu_campaign.py
--data`` with ``--set data.split=null --set data.extra_paths=[]``: it is the training split already.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from PIL import Image

from metasparse.data.images import list_image_files
from metasparse.data.splits import parse_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding photos/ and imagenette/")
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    parser.add_argument("--split", default="train:0.15", help="split of the photos to copy (default train:0.15)")
    parser.add_argument("--per-class", type=int, default=300, help="Imagenette images per class (default 300)")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"error: {args.out} exists", file=sys.stderr)
        return 2
    files, names = list_image_files(args.data_root / "photos")
    for i in parse_split(args.split).select(names):
        target = (args.out / "photos" / names[i]).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(files[i]) as image:
            image.convert("RGB").save(target, quality=95)
    files, names = list_image_files(args.data_root / "imagenette" / "train")
    taken: dict[str, int] = {}
    for file, name in zip(files, names):
        label = name.split("/")[0]
        if taken.get(label, 0) < args.per_class:
            taken[label] = taken.get(label, 0) + 1
            target = args.out / "imagenette" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {sum(taken.values())} Imagenette images and the photos of {args.split}, {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
