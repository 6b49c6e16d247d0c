#!/usr/bin/env python3
"""Known-answer numbers for `core/tests/known_answer.rs`, from diffusers' DDIMScheduler.

Usage: python3 core/tools/diffusers_reference.py > core/tests/data/diffusers_ddim.txt

Needs `torch` and `diffusers` (versions are printed in the header). For each case it writes
`alphas_cumprod` at a few indices (diffusers computes them in float32, so the Rust side, which
computes in f64, is compared with a relative tolerance of 1e-5) and the full DDIM timestep grid
(`set_timesteps`, exact integers; diffusers lists them decreasing).

Line format (whitespace separated):
    alpha <case> <t> <value>
    grid <case> <spacing> <num_inference_steps> <steps_offset> <t0> <t1> ...
"""
from __future__ import annotations

import argparse

import diffusers
import torch
from diffusers import DDIMScheduler

CASES = {
    # name: (beta_schedule, beta_start, beta_end, train_steps)
    "dit_linear": ("linear", 1e-4, 0.02, 1000),
    "sd_scaled_linear": ("scaled_linear", 0.00085, 0.012, 1000),
    "cosine": ("squaredcos_cap_v2", 1e-4, 0.02, 1000),
    "linear_short": ("linear", 1e-4, 0.02, 100),
}
ALPHA_INDICES = [0, 1, 2, 10, 99, 250, 500, 620, 750, 999]
GRIDS = [
    ("leading", 50, 0),
    ("leading", 31, 0),
    ("leading", 50, 1),
    ("trailing", 50, 0),
    ("trailing", 31, 0),
    ("linspace", 50, 0),
    ("linspace", 31, 0),
    ("linspace", 7, 0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    print(f"# diffusers {diffusers.__version__}, torch {torch.__version__}")
    for name, (sched, b0, b1, n) in CASES.items():
        s = DDIMScheduler(num_train_timesteps=n, beta_start=b0, beta_end=b1, beta_schedule=sched)
        for t in ALPHA_INDICES:
            if t < n:
                print(f"alpha {name} {t} {float(s.alphas_cumprod[t]):.9e}")
        if name != "dit_linear":
            continue
        for spacing, steps, offset in GRIDS:
            g = DDIMScheduler(num_train_timesteps=n, beta_start=b0, beta_end=b1, beta_schedule=sched,
                              timestep_spacing=spacing, steps_offset=offset)
            g.set_timesteps(steps)
            ts = " ".join(str(int(t)) for t in g.timesteps)
            print(f"grid {name} {spacing} {steps} {offset} {ts}")


if __name__ == "__main__":
    main()
