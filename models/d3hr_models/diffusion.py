"""DDPM noise schedule (DiT's linear beta) and deterministic DDIM steps (eta = 0).

Formulas as in docs/ALGORITHM.md:

inversion step t_prev -> t (predictor evaluated at the target step t):
    eps = eps_theta(z, t, c); z0_hat = (z - sqrt(1 - a_prev) eps) / sqrt(a_prev)
    z_next = sqrt(a_t) z0_hat + sqrt(1 - a_t) eps
sampling step t -> t_prev:
    eps = eps_theta(z, t, c); z0_hat = (z - sqrt(1 - a_t) eps) / sqrt(a_t)
    z_prev = sqrt(a_prev) z0_hat + sqrt(1 - a_prev) eps
where a_t = alphas_cumprod[t] (computed in float64).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def alphas_cumprod(num_steps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = BETA_START,
                   beta_end: float = BETA_END) -> np.ndarray:
    """float64 [num_steps]: cumulative product of (1 - beta_t), beta linear in [beta_start, beta_end]."""
    betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def timestep_grid(steps: int, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """Increasing grid t_0 = 0 < t_1 < ... < t_steps = num_train - 1 (``steps`` DDIM steps), evenly
    spaced and rounded to integers: ``round(linspace(0, num_train - 1, steps + 1))``."""
    return [int(round(v)) for v in np.linspace(0, num_train - 1, steps + 1)]


def q_sample(z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """Forward process: sqrt(a_t) z0 + sqrt(1 - a_t) noise (``ac`` = alphas_cumprod as a tensor)."""
    a = ac[t].view(-1, *([1] * (z0.dim() - 1))).to(z0.dtype)
    return a.sqrt() * z0 + (1 - a).sqrt() * noise


def _step(z: torch.Tensor, eps: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    z0_hat = (z - np.sqrt(1.0 - a_from) * eps) / np.sqrt(a_from)
    return np.sqrt(a_to) * z0_hat + np.sqrt(1.0 - a_to) * eps


@torch.no_grad()
def ddim_invert(eps_fn: EpsFn, z0: torch.Tensor, y: torch.Tensor, grid: list[int],
                ac: np.ndarray, *, eps_at: str) -> torch.Tensor:
    """Map clean latents (at t_0 = grid[0]) up to grid[-1].

    ``eps_at`` says where each step t_prev -> t evaluates the predictor: ``"source"`` (t_prev,
    the paper's Eq. 3) or ``"target"`` (t, the authors' released code).
    """
    if eps_at not in ("source", "target"):
        raise ValueError(f"eps_at must be 'source' or 'target', not {eps_at!r}")
    z = z0
    for t_prev, t in zip(grid[:-1], grid[1:]):
        tt = torch.full((z.shape[0],), t_prev if eps_at == "source" else t, dtype=torch.int64)
        eps = eps_fn(z, tt, y)
        z = _step(z, eps, ac[t_prev], ac[t])
    return z


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, z_t: torch.Tensor, y: torch.Tensor, grid: list[int],
                ac: np.ndarray) -> torch.Tensor:
    """Run latents at grid[-1] down to grid[0]."""
    z = z_t
    for t, t_prev in zip(grid[:0:-1], grid[-2::-1]):
        tt = torch.full((z.shape[0],), t, dtype=torch.int64)
        eps = eps_fn(z, tt, y)
        z = _step(z, eps, ac[t], ac[t_prev])
    return z
