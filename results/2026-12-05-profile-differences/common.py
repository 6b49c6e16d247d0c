"""Shared setup for the profile-difference measurements (one thread, the committed checkpoints,
the first N training images of every class, the paper grid t = 0, 20, ..., 620)."""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.join(REPO, "models")
if MODELS not in sys.path:
    sys.path.insert(0, MODELS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from d3hr_models.data import DEFAULT_DATA_DIR, load_split, to_model_range  # noqa: E402
from d3hr_models.diffusion import alphas_cumprod, ddim_invert, ddim_sample  # noqa: E402
from d3hr_models.dit import load_dit  # noqa: E402
from d3hr_models.vae import load_vae  # noqa: E402

CKPT = os.path.join(MODELS, "fashion_mnist", "checkpoints")
GRID = [20 * i for i in range(32)]  # DiT's leading 50-step grid up to T = 31 (t = 620)
AC = alphas_cumprod()


def models():
    return load_vae(os.path.join(CKPT, "vae.pt")).eval(), load_dit(os.path.join(CKPT, "dit_ema.pt")).eval()


def first_per_class(n: int):
    """uint8 images [10n, 28, 28] and labels: the first n training images of each class, class-sorted."""
    images, labels = load_split(DEFAULT_DATA_DIR, "train")
    keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)])
    return images[keep], labels[keep]


def rel_l2(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def class_stats(z: np.ndarray, labels: np.ndarray):
    """per-class mean and population std over flattened latents (float64) -> [10, d], [10, d]."""
    z = z.reshape(len(z), -1).astype(np.float64)
    mu = np.stack([z[labels == c].mean(0) for c in range(10)])
    sd = np.stack([z[labels == c].std(0) for c in range(10)])
    return mu, sd


def per_class_rel(a: np.ndarray, b: np.ndarray):
    """relative L2 of a vs reference b, row by row -> (mean over rows, max over rows, list)."""
    r = [rel_l2(a[i], b[i]) for i in range(len(b))]
    return float(np.mean(r)), float(np.max(r)), r
