"""Encode the Fashion-MNIST training (and test) set with the trained VAE into scaled latents.

Writes ``<out>/latents_<split>.npy`` (float32 [N, 4, 8, 8] = posterior mean x scaling_factor) and
``<out>/labels_<split>.npy`` (int64 [N]). These are the DiT's training data (train_dit.py).

Example:
    python models/fashion_mnist/encode.py
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from d3hr_fashion_mnist._common import CHECKPOINT_DIR, WORK_DIR, log, set_threads
from d3hr_models.data import DEFAULT_DATA_DIR, load_tensors
from d3hr_models.vae import load_vae


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--vae", default=os.path.join(CHECKPOINT_DIR, "vae.pt"), help="VAE checkpoint (train_vae.py)")
    p.add_argument("--out", default=os.path.join(WORK_DIR, "latents"), help="output folder (git-ignored)")
    p.add_argument("--splits", default="train,test", help="comma-separated splits to encode")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return p.parse_args()


@torch.no_grad()
def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    vae = load_vae(args.vae)
    s = float(vae.scaling_factor)
    os.makedirs(args.out, exist_ok=True)
    for split in args.splits.split(","):
        x, y = load_tensors(args.data, split)
        lat = vae.posterior_means(x) * s
        np.save(os.path.join(args.out, f"latents_{split}.npy"), lat.numpy().astype(np.float32))
        np.save(os.path.join(args.out, f"labels_{split}.npy"), y.numpy().astype(np.int64))
        log(f"{split}: latents {tuple(lat.shape)} mean {lat.mean():.4f} std {lat.std():.4f} "
            f"(scaling_factor {s:.5f})")


if __name__ == "__main__":
    main()
