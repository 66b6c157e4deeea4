"""Collect the runs of README.md into results.csv and a markdown table (run from the repository root)."""

import csv
import json
import sys
from pathlib import Path

RUNS = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/modalities")
OUT = Path(__file__).parent
MODALITIES = ("voxels", "sdf3d", "sphere", "sdf2d")

rows = []
for modality in MODALITIES:
    for init, run in (("meta-learned", modality), ("random (scratch)", f"{modality}-scratch")):
        for folder in ("eval10", "eval"):
            path = RUNS / run / folder / "results.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            row = {"modality": modality, "init": init, "fit_steps": r["fit"]["steps"], "signals": r["signals"],
                   "weights": r["nonzero_weights"], "psnr_before_fit": round(r["psnr_trajectory_mean"][0], 2),
                   "psnr_mean": round(r["psnr_mean"], 2),
                   "psnr_std": round(r["psnr_std"], 2)}
            for name in ("accuracy", "iou", "chamfer", "surface_found"):
                v, s = r.get("metrics", {}).get(name), r.get("metrics_std", {}).get(name)
                row[name] = "" if v is None else f"{v:.4f} ± {s:.4f}"
            rows.append(row)
with (OUT / "results.csv").open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
print("| modality | init | fit steps | signals | PSNR before fit | PSNR (dB) | accuracy | IoU | Chamfer-L1 | surface found |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['modality']} | {r['init']} | {r['fit_steps']} | {r['signals']} | {r['psnr_before_fit']:.2f} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} "
          f"| {r['accuracy']} | {r['iou']} | {r['chamfer']} | {r['surface_found']} |")
