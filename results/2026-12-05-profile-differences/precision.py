"""Difference 1 (precision): the same paper-profile inversion with the VAE encoder and DiT in
float16 (and, for comparison, bfloat16) vs float32, on CPU, one thread.

Half precision here is real half-precision compute: weights cast with ``.to(dtype)``, inputs cast,
every layer runs in that dtype (PyTorch's CPU kernels; matmuls/convs accumulate internally in fp32,
as cuBLAS fp16 GEMMs do on GPU), and the latent z is kept in that dtype between DDIM steps (as
diffusers' scheduler keeps fp16 latents). The sinusoidal time embedding is computed in fp32 and cast
to the model dtype before the MLP (what diffusers does: ``timesteps_proj.to(dtype=hidden_dtype)``).
Statistics (mu, population sigma) are always computed in float64 from the z_T each run produced.

Usage: python precision.py [N_PER_CLASS=30] > precision.json
"""
from __future__ import annotations

import json
import sys
import time

from common import (AC, GRID, class_stats, ddim_invert, ddim_sample, first_per_class, models,
                    per_class_rel, rel_l2, to_model_range)
import numpy as np
import torch
from d3hr_models.data import crop
from d3hr_models.dit import TimestepEmbedder


def _fwd(self, t):
    return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size).to(self.mlp[0].weight.dtype))


TimestepEmbedder.forward = _fwd  # identity for fp32; the diffusers-style cast for fp16/bf16

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
images, labels = first_per_class(N)
x_all = to_model_range(images)
y_all = torch.from_numpy(labels)


@torch.no_grad()
def run(vae_dtype, dit_dtype, batch=100):
    vae, dit = models()
    vae, dit = vae.to(vae_dtype), dit.to(dit_dtype)
    s = float(vae.scaling_factor.float())
    eps_fn = lambda z, t, y: dit(z.to(dit_dtype), t, y)[:, :4]
    zT, rec = [], []
    for b in range(0, len(x_all), batch):
        x, y = x_all[b:b + batch].to(vae_dtype), y_all[b:b + batch]
        z0 = (vae.encode(x)[0] * s).to(dit_dtype)
        z = ddim_invert(eps_fn, z0, y, GRID, AC, eps_at="source")
        assert z.dtype == dit_dtype, z.dtype
        zT.append(z.float())
        z0b = ddim_sample(eps_fn, z, y, GRID, AC)
        img = crop(vae.decode((z0b / s).to(vae_dtype)).float()).clamp(-1, 1)
        rec.append((img + 1) / 2)  # [0, 1]
    return torch.cat(zT).numpy(), torch.cat(rec).numpy()


t0 = time.time()
ref_z, ref_img = run(torch.float32, torch.float32)
mu32, sd32 = class_stats(ref_z, labels)
out = {"n_images": int(len(labels)), "per_class": N, "grid": GRID, "torch": torch.__version__,
       "threads": torch.get_num_threads(), "variants": {}}
for name, vd, dd in [("fp16 VAE encoder + fp16 DiT", torch.float16, torch.float16),
                     ("fp32 VAE encoder + fp16 DiT", torch.float32, torch.float16),
                     ("bf16 VAE encoder + bf16 DiT", torch.bfloat16, torch.bfloat16)]:
    t1 = time.time()
    z, img = run(vd, dd)
    mu, sd = class_stats(z, labels)
    m_mu = per_class_rel(mu, mu32)
    m_sd = per_class_rel(sd, sd32)
    per_img = [rel_l2(z[i], ref_z[i]) for i in range(len(z))]
    mad = np.abs(img - ref_img).reshape(len(img), -1).mean(1)
    mse = ((img - ref_img) ** 2).reshape(len(img), -1).mean(1)
    out["variants"][name] = {
        "mu_rel_l2_mean_over_classes": m_mu[0], "mu_rel_l2_max_over_classes": m_mu[1],
        "sigma_rel_l2_mean_over_classes": m_sd[0], "sigma_rel_l2_max_over_classes": m_sd[1],
        "zT_per_image_rel_l2_mean": float(np.mean(per_img)), "zT_per_image_rel_l2_max": float(np.max(per_img)),
        "roundtrip_image_mean_abs_diff_01": float(mad.mean()),
        "roundtrip_image_max_abs_diff_01": float(np.abs(img - ref_img).max()),
        "roundtrip_image_psnr_db_vs_fp32": float(10 * np.log10(1.0 / max(mse.mean(), 1e-20))),
        "seconds": time.time() - t1,
    }
    print(name, json.dumps(out["variants"][name]), file=sys.stderr, flush=True)
# storing the fp32 statistics in fp16 (the authors save mu/sigma as fp16 tensors)
mu_h = mu32.astype(np.float16).astype(np.float64)
sd_h = sd32.astype(np.float16).astype(np.float64)
out["fp16_storage_of_fp32_stats"] = {
    "mu_rel_l2_mean_over_classes": per_class_rel(mu_h, mu32)[0],
    "mu_rel_l2_max_over_classes": per_class_rel(mu_h, mu32)[1],
    "sigma_rel_l2_mean_over_classes": per_class_rel(sd_h, sd32)[0],
    "sigma_rel_l2_max_over_classes": per_class_rel(sd_h, sd32)[1]}
# scale of the quantities, for context
out["fp32_reference"] = {"mu_norm_mean_over_classes": float(np.linalg.norm(mu32, axis=1).mean()),
                         "sigma_norm_mean_over_classes": float(np.linalg.norm(sd32, axis=1).mean()),
                         "d": int(mu32.shape[1])}
out["total_seconds"] = time.time() - t0
print(json.dumps(out, indent=1))
