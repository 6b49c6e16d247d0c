"""Shared helpers for the Fashion-MNIST scripts: folders, seeding, threads, timing."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.dirname(HERE)
REPO_DIR = os.path.dirname(MODELS_DIR)

#: default output folders, relative to this file
CHECKPOINT_DIR = os.path.join(HERE, "checkpoints")
WORK_DIR = os.path.join(MODELS_DIR, "work")  # big intermediates; git-ignored (models/.gitignore)
ONNX_DIR = os.path.join(HERE, "onnx")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


class Timer:
    def __init__(self) -> None:
        self.t0 = time.time()

    def elapsed(self) -> float:
        return time.time() - self.t0


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)
