"""Fashion-MNIST loading (IDX format, optionally gzipped) and the 28x28 -> 32x32 padding.

Images are mapped from uint8 [0, 255] to float [-1, 1] and padded by ``PAD`` pixels on every side with
the value -1 (the black background), giving 1x32x32. To go back, crop ``[PAD:PAD+28, PAD:PAD+28]``.
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import torch

#: Debian's ``fashion-mnist`` package installs the four IDX files here.
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
#: Pixels of padding added on each side (28 + 2 * 2 = 32).
PAD = 2
RAW_SIZE = 28
IMAGE_SIZE = RAW_SIZE + 2 * PAD
NUM_CLASSES = 10
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def _open(path: str):
    if os.path.exists(path):
        return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    if os.path.exists(path + ".gz"):
        return gzip.open(path + ".gz", "rb")
    raise FileNotFoundError(f"{path} (or {path}.gz) not found")


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (uint8 payload) into a numpy array of its declared shape."""
    with _open(path) as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) for split 'train' or 'test'."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return images, labels


def to_model_range(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 32, 32] in [-1, 1], padded with -1."""
    x = torch.from_numpy(images_u8.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    return torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)


def crop(x: torch.Tensor) -> torch.Tensor:
    """[N, 1, 32, 32] -> [N, 1, 28, 28] (undo the padding)."""
    return x[..., PAD:PAD + RAW_SIZE, PAD:PAD + RAW_SIZE]


def load_tensors(data_dir: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float [N, 1, 32, 32] in [-1, 1] and labels int64 [N]."""
    images, labels = load_split(data_dir, split)
    return to_model_range(images), torch.from_numpy(labels)
