"""Difference 4 (time embedding): the official DiT sinusoidal embedding (what models/d3hr_models/dit.py
and our exported graphs use: [cos, sin], f_i = 10000^(-i/128), i = 0..127) vs diffusers' DiT
(``CombinedTimestepLabelEmbeddings``: ``Timesteps(256, flip_sin_to_cos=True,
downscale_freq_shift=1)`` -> [cos, sin], f_i = 10000^(-i/127)); the diffusers function is called
from the installed diffusers package. Weights stay fixed (the committed Fashion-MNIST DiT), which is
the situation of an official checkpoint loaded into a diffusers pipeline.

Also measured, because the same row of docs/algorithm.md names it: diffusers' DiT blocks normalise
before the MLP with LayerNorm eps 1e-5 (``norm3``, the ``norm_eps`` default) where the official code
uses 1e-6 (``norm2``); and both changes together (= the diffusers graph under official weights).

(a) max |difference| of the two 256-dim embeddings over t = 0, 20, ..., 980;
(b) relative L2 of eps_theta on 64 real latents (the first 64 training images, VAE posterior mean
    x scaling factor, DDIM-inverted with the unmodified model to t) at t = 0, 300, 620;
(c) per-class mu and sigma of z_T after a full paper-profile inversion of N per class, relative L2.

Usage: python time_embedding.py [N_PER_CLASS=30] > time_embedding.json
"""
from __future__ import annotations

import json
import sys
import time

from common import (AC, GRID, class_stats, ddim_invert, first_per_class, models, per_class_rel, rel_l2,
                    to_model_range)
import diffusers
import numpy as np
import torch
from diffusers.models.embeddings import get_timestep_embedding
from d3hr_models.dit import TimestepEmbedder

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
official = TimestepEmbedder.timestep_embedding


def diffusers_emb(t, dim, max_period=10000.0):
    return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=1, max_period=int(max_period))


out = {"diffusers": diffusers.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}

# (a)
ts = torch.arange(0, 1000, 20)
ea, eb = official(ts, 256), diffusers_emb(ts, 256)
diff = (ea - eb).abs()
out["a_embedding"] = {"t": "0..980 step 20", "dim": 256, "max_abs_diff": float(diff.max()),
                      "argmax_t": int(ts[diff.max(1).values.argmax()]),
                      "max_abs_diff_at_t": {int(t): float(diff[i].max()) for i, t in enumerate(ts) if int(t) in (0, 20, 300, 620, 980)},
                      "rel_l2_at_t": {int(t): rel_l2(eb[i].numpy(), ea[i].numpy()) for i, t in enumerate(ts) if int(t) in (20, 300, 620, 980)}}
# the diffusers ordering is the same [cos | sin] as the official one: no permutation, only the frequencies differ
out["a_embedding"]["same_layout_cos_first"] = bool(torch.allclose(diffusers_emb(torch.tensor([0]), 256)[0, :128], torch.ones(128)))
print(out["a_embedding"], file=sys.stderr, flush=True)

vae, dit = models()
s = float(vae.scaling_factor)


class Variant:
    """Context manager: swap the embedding function and/or the pre-MLP LayerNorm eps of every block."""

    def __init__(self, emb=False, ln=False):
        self.emb, self.ln = emb, ln

    def __enter__(self):
        if self.emb:
            TimestepEmbedder.timestep_embedding = staticmethod(diffusers_emb)
        if self.ln:
            for b in dit.blocks:
                b.norm2.eps = 1e-5

    def __exit__(self, *exc):
        TimestepEmbedder.timestep_embedding = staticmethod(official)
        for b in dit.blocks:
            b.norm2.eps = 1e-6


VARIANTS = {"diffusers time embedding": dict(emb=True), "LayerNorm eps 1e-5 before the MLP": dict(ln=True),
            "both (diffusers DiT graph, official weights)": dict(emb=True, ln=True)}
eps_fn = lambda z, t, y: dit(z, t, y)[:, :4]

# (b)
images, labels = first_per_class(N)
from d3hr_models.data import load_split, DEFAULT_DATA_DIR  # noqa: E402
im64, lb64 = load_split(DEFAULT_DATA_DIR, "train")
im64, lb64 = im64[:64], torch.from_numpy(lb64[:64])
with torch.no_grad():
    z0 = vae.encode(to_model_range(im64))[0] * s
    out["b_eps"] = {}
    for t in (0, 300, 620):
        zt = ddim_invert(eps_fn, z0, lb64, [g for g in GRID if g <= t], AC, eps_at="source") if t else z0
        tt = torch.full((64,), t, dtype=torch.int64)
        ref = eps_fn(zt, tt, lb64).numpy()
        for name, kw in VARIANTS.items():
            with Variant(**kw):
                e = eps_fn(zt, tt, lb64).numpy()
            out["b_eps"].setdefault(name, {})[t] = rel_l2(e, ref)
print(out["b_eps"], file=sys.stderr, flush=True)

# (c)
x_all, y_all = to_model_range(images), torch.from_numpy(labels)


@torch.no_grad()
def invert_all():
    zs = []
    for b in range(0, len(x_all), 100):
        z = vae.encode(x_all[b:b + 100])[0] * s
        zs.append(ddim_invert(eps_fn, z, y_all[b:b + 100], GRID, AC, eps_at="source"))
    return torch.cat(zs).numpy()


t0 = time.time()
ref_z = invert_all()
mu0, sd0 = class_stats(ref_z, labels)
out["c_zT"] = {"n_images": int(len(labels)), "per_class": N}
for name, kw in VARIANTS.items():
    with Variant(**kw):
        z = invert_all()
    mu, sd = class_stats(z, labels)
    a, b = per_class_rel(mu, mu0), per_class_rel(sd, sd0)
    out["c_zT"][name] = {"mu_rel_l2_mean_over_classes": a[0], "mu_rel_l2_max_over_classes": a[1],
                         "sigma_rel_l2_mean_over_classes": b[0], "sigma_rel_l2_max_over_classes": b[1],
                         "zT_per_image_rel_l2_mean": float(np.mean([rel_l2(z[i], ref_z[i]) for i in range(len(z))]))}
    print(name, out["c_zT"][name], file=sys.stderr, flush=True)
out["c_seconds"] = time.time() - t0
print(json.dumps(out, indent=1))
