"""Fashion-MNIST as the evaluation sees it, read here and nowhere else.

The IDX files (``train-images-idx3-ubyte`` etc., optionally gzipped) are parsed directly; images are
mapped from uint8 to [-1, 1] (``v / 127.5 - 1``) and padded from 28x28 to 32x32 with -1 (the black
background). This deliberately duplicates the generator's reader in ``models/``: evaluation must not
share code with what it evaluates.
"""
from __future__ import annotations

import gzip
import os
import platform

import numpy as np
import torch
import torch.nn.functional as F

#: where the four Fashion-MNIST IDX files live on the measurement machines
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
NUM_CLASSES = 10
#: side of a Fashion-MNIST image, and the border that makes it 32x32
RAW_SIZE = 28
PAD = 2
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_bytes(path: str) -> bytes:
    for candidate in (path, path + ".gz"):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                return f.read()
    raise FileNotFoundError(f"neither {path} nor {path}.gz exists")


def read_idx_u8(path: str) -> np.ndarray:
    """An IDX file of unsigned bytes as a numpy array of the shape its header declares."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: expected an IDX file of unsigned bytes (magic 0x0000 08 nn)")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, payload has {payload.size} bytes")
    return payload.reshape(shape)


def read_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 28, 28], int64 labels [N]) of the ``train`` or ``test`` split."""
    images_file, labels_file = FILES[split]
    images = read_idx_u8(os.path.join(data_dir, images_file))
    labels = read_idx_u8(os.path.join(data_dir, labels_file)).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (RAW_SIZE, RAW_SIZE):
        raise ValueError(f"{data_dir} {split}: images {images.shape}, labels {labels.shape}")
    return images, labels


def pad32(x: torch.Tensor) -> torch.Tensor:
    """[..., 28, 28] -> [..., 32, 32], the new border filled with -1."""
    return F.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)


def to_input(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 32, 32] in [-1, 1], padded with -1: the network's input."""
    x = torch.from_numpy(images_u8.astype(np.float32) / 127.5 - 1.0)
    return pad32(x.unsqueeze(1))


def read_inputs(data_dir: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as network inputs ([N, 1, 32, 32] in [-1, 1]) and int64 labels."""
    images, labels = read_split(data_dir, split)
    return to_input(images), torch.from_numpy(labels)


def machine() -> dict:
    """CPU model (from /proc/cpuinfo on Linux) and logical CPU count, recorded with every wall time."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    return {"cpu": cpu or platform.processor() or platform.machine(), "logical_cpus": os.cpu_count()}
