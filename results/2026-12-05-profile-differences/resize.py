"""Difference 3 (image preprocessing): upscale 28x28 Fashion-MNIST images to 256x256 the way an
ImageNet-shaped run would, with bilinear (the authors' loader: ``Resize(256)``; here
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)``) and with
Lanczos-3 (what d3hr-cli uses: the ``image`` crate's ``FilterType::Lanczos3``; here PIL's
``Image.LANCZOS`` on float images and, as a cross-check, a separable Lanczos-3 written below in numpy).
A 28 -> 256 resize of a square image needs no crop (the center crop of 256 is the identity).

Pixels in [0, 1]; results clipped to [0, 1] (as any 8-bit or [0,1] pipeline would) unless noted.
Usage: python resize.py [N=100] > resize.json
"""
from __future__ import annotations

import json
import sys

from common import first_per_class
import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
S = 256
images, labels = first_per_class(N // 10)  # first N/10 training images of every class
x = images.astype(np.float32) / 255.0


def lanczos_kernel(v: np.ndarray, a: int = 3) -> np.ndarray:
    out = np.sinc(v) * np.sinc(v / a)
    out[np.abs(v) >= a] = 0.0
    return out


def lanczos_matrix(n_in: int, n_out: int, a: int = 3) -> np.ndarray:
    """[n_out, n_in] weights of a Lanczos-a resize (pixel centres aligned as in PIL / image-rs;
    upscaling, so the kernel is not stretched); taps outside the image dropped, rows normalised to
    sum 1 (the edge handling of PIL and of image-rs)."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        c = (o + 0.5) * scale - 0.5
        lo = int(np.floor(c)) - a + 1
        for i in range(lo, lo + 2 * a):
            if 0 <= i < n_in:
                w[o, i] += lanczos_kernel(np.array([c - i], dtype=np.float64))[0]
        w[o] /= w[o].sum()
    return w


def bilinear_torch(x):
    return F.interpolate(torch.from_numpy(x)[:, None], size=(S, S), mode="bilinear", align_corners=False,
                         antialias=False)[:, 0].numpy().astype(np.float64)


def lanczos_pil(x):
    return np.stack([np.asarray(Image.fromarray(im, mode="F").resize((S, S), Image.LANCZOS), dtype=np.float64)
                     for im in x])


def lanczos_numpy(x):
    w = lanczos_matrix(x.shape[1], S)
    return np.einsum("oi,nij,pj->nop", w, x.astype(np.float64), w)


def bilinear_pil_u8(u8):
    """What torchvision's Resize does on PIL images (the authors' ImageFolder loader): PIL bilinear, 8 bit."""
    return np.stack([np.asarray(Image.fromarray(im).resize((S, S), Image.BILINEAR), dtype=np.float64) / 255.0
                     for im in u8])


def compare(a, b, clip=True):
    if clip:
        a, b = np.clip(a, 0, 1), np.clip(b, 0, 1)
    d = a - b
    mse = (d ** 2).reshape(len(d), -1).mean(1)
    return {"mean_abs_diff": float(np.abs(d).mean()), "max_abs_diff": float(np.abs(d).max()),
            "psnr_db_pooled": float(10 * np.log10(1.0 / mse.mean())),
            "psnr_db_mean_per_image": float(np.mean(10 * np.log10(1.0 / mse)))}


bl = bilinear_torch(x)
lz = lanczos_pil(x)
lzn = lanczos_numpy(x)
out = {"n_images": int(len(x)), "size": S, "pil": PIL.__version__, "torch": torch.__version__,
       "bilinear_torch_vs_lanczos_pil": compare(bl, lz),
       "bilinear_torch_vs_lanczos_pil_unclipped": compare(bl, lz, clip=False),
       "bilinear_torch_vs_lanczos_numpy": compare(bl, lzn),
       "lanczos_numpy_vs_lanczos_pil_crosscheck": compare(lzn, lz, clip=False),
       "bilinear_pil_u8_vs_lanczos_pil": compare(bilinear_pil_u8(images), lz),
       "bilinear_pil_u8_vs_bilinear_torch": compare(bilinear_pil_u8(images), bl),
       "lanczos_overshoot_fraction_outside_01": float(((lz < 0) | (lz > 1)).mean())}
print(json.dumps(out, indent=1))
