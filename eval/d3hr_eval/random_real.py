"""Write a random real subset of the Fashion-MNIST training set as an ImageFolder -- the "random real"
baseline row of the accuracy table.

For every class, ``--ipc`` training images are drawn uniformly without replacement (numpy
``default_rng(--seed)``, classes in order 0..9) and written unchanged as 28x28 grayscale PNGs to
``<out>/<class id>/<k>.png`` (k = 0..ipc-1), the layout ``d3hr-cli distill`` writes and
``python -m d3hr_eval.validate`` reads. ``<out>/random_real.json`` records the seed, the IPC and the training-set index
of every image.

Example:
    python -m d3hr_eval.random_real --ipc 10 --seed 0 --out /tmp/random_real_ipc10_s0
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image

from d3hr_eval.data import DEFAULT_DATA_DIR, NUM_CLASSES, read_split


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA_DIR,
                   help="folder with the Fashion-MNIST IDX files (the train split is sampled; "
                        "default: Debian's %(default)s)")
    p.add_argument("--ipc", type=int, required=True, help="images per class to draw")
    p.add_argument("--seed", type=int, default=0, help="random seed of the draw")
    p.add_argument("--out", required=True, help="output folder: <out>/<class id>/<k>.png")
    p.add_argument("--force", action="store_true", help="write into a non-empty output folder (replaces files)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.ipc < 1:
        raise SystemExit("--ipc must be at least 1")
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
        raise SystemExit(f"{args.out} is not empty (use --force to write into it)")
    images, labels = read_split(args.data, "train")
    rng = np.random.default_rng(args.seed)
    chosen: dict[str, list[int]] = {}
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx) < args.ipc:
            raise SystemExit(f"class {c} has only {len(idx)} training images")
        pick = rng.choice(idx, size=args.ipc, replace=False)
        folder = os.path.join(args.out, str(c))
        os.makedirs(folder, exist_ok=True)
        for k, i in enumerate(pick):
            Image.fromarray(np.ascontiguousarray(images[i])).save(os.path.join(folder, f"{k}.png"))
        chosen[str(c)] = [int(i) for i in pick]
    with open(os.path.join(args.out, "random_real.json"), "w") as f:
        json.dump({"source": os.path.abspath(args.data), "split": "train", "ipc": args.ipc, "seed": args.seed,
                   "indices": chosen}, f, indent=1)
    print(f"wrote {NUM_CLASSES} x {args.ipc} images to {args.out}")


if __name__ == "__main__":
    main()
