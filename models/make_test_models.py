"""Generate tiny random-weight ONNX graphs plus PyTorch reference tensors for the Rust parity tests.

Writes to --out (default models/test_data/):
  dit_tiny.onnx          DiT, 4x8x8 latent, patch 2, hidden 32, depth 2, 2 heads, 10 classes (+ null 10),
                         learn_sigma=True (the graph returns only the 4 epsilon channels).
                         Inputs x [B,4,8,8] f32, t [B] int64, y [B] int64 -> eps [B,4,8,8].
  vae_tiny_encoder.onnx  image [B,1,32,32] -> mean, logvar [B,4,8,8]
  vae_tiny_decoder.onnx  latent [B,4,8,8] -> image [B,1,32,32]
  reference.safetensors  inputs and PyTorch outputs for each graph (batch 3), the float64 alphas_cumprod
                         of the linear schedule, and a 31-step DDIM inversion followed by 31-step DDIM
                         sampling with the tiny DiT (guidance 1): ddim_z0, ddim_y, ddim_grid, ddim_zT, ddim_z0_back.
Weights are random with a fixed seed. The DiT's adaLN-Zero layers are re-initialised to non-zero random
values (otherwise the untrained output would be identically zero). Opset --opset, IR version <= 9,
ONNX checker run on every file, each graph checked against PyTorch with onnxruntime.

Example:
    python models/make_test_models.py
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from d3hr_models.diffusion import alphas_cumprod, ddim_invert, ddim_sample, timestep_grid  # noqa: E402
from d3hr_models.dit import DiT, DiTConfig, EpsOnly  # noqa: E402
from d3hr_models.vae import KLVAE, VAEConfig  # noqa: E402

MAX_IR_VERSION = 9


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(HERE, "test_data"), help="output folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (pinned)")
    p.add_argument("--seed", type=int, default=1234, help="seed for weights and reference inputs")
    p.add_argument("--tol", type=float, default=1e-5, help="max abs error allowed between ORT and PyTorch")
    return p.parse_args()


def export(module, args, path, in_names, out_names, opset, meta):
    torch.onnx.export(module, args, path, input_names=in_names, output_names=out_names, opset_version=opset,
                      dynamic_axes={n: {0: "batch"} for n in in_names + out_names}, dynamo=False)
    model = onnx.load(path)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def check(path, inputs: dict, refs: list[np.ndarray], tol: float) -> float:
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, inputs)
    err = max(float(np.abs(g - r).max()) for g, r in zip(got, refs))
    if not err <= tol:
        raise SystemExit(f"{path}: max abs error {err:.3e} > {tol:.1e}")
    return err


@torch.no_grad()
def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    common = {"latent_shape": "4,8,8", "num_classes": "10", "null_class": "10",
              "timestep": "integer DDPM step index 0..999 (int64), linear beta 0.0001..0.02, 1000 steps",
              "image_shape": "1,32,32", "scaling_factor": "0.5", "producer_script": "models/make_test_models.py",
              "note": "random weights, for tests only"}

    # --- tiny DiT ---
    cfg = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2,
                    num_classes=10, class_dropout_prob=0.1, learn_sigma=True)
    dit = DiT(cfg)
    for name, p in dit.named_parameters():
        if name != "pos_embed":
            p.normal_(0.0, 0.2)
    dit.eval()
    wrapper = EpsOnly(dit).eval()
    x = torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 517, 999], dtype=torch.int64)
    y = torch.tensor([3, 9, 10], dtype=torch.int64)  # 10 = null class
    eps = wrapper(x, t, y)
    path = os.path.join(args.out, "dit_tiny.onnx")
    export(wrapper, (x, t, y), path, ["x", "t", "y"], ["eps"], args.opset,
           {**common, "model": "tiny DiT, epsilon channels only", "dit_config": str(cfg.to_dict())})
    err = check(path, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()}, [eps.numpy()], args.tol)
    print(f"{path}: max abs err {err:.2e}")
    tensors.update({"dit_x": x.numpy(), "dit_t": t.numpy(), "dit_y": y.numpy(), "dit_eps": eps.numpy()})

    # --- tiny VAE ---
    vae = KLVAE(VAEConfig(base_channels=8, ch_mult=(1, 2, 4), groups=4, unshuffle=1)).eval()
    img = torch.rand(3, 1, 32, 32) * 2 - 1
    mean, logvar = vae.encoder(img)
    path = os.path.join(args.out, "vae_tiny_encoder.onnx")
    export(vae.encoder, (img,), path, ["image"], ["mean", "logvar"], args.opset,
           {**common, "model": "tiny KL-VAE encoder (unscaled mean, logvar)"})
    err = check(path, {"image": img.numpy()}, [mean.numpy(), logvar.numpy()], args.tol)
    print(f"{path}: max abs err {err:.2e}")
    lat = torch.randn(3, 4, 8, 8)
    out = vae.decoder(lat)
    path = os.path.join(args.out, "vae_tiny_decoder.onnx")
    export(vae.decoder, (lat,), path, ["latent"], ["image"], args.opset,
           {**common, "model": "tiny KL-VAE decoder (unscaled latent in)"})
    err = check(path, {"latent": lat.numpy()}, [out.numpy()], args.tol)
    print(f"{path}: max abs err {err:.2e}")
    tensors.update({"vae_image": img.numpy(), "vae_mean": mean.numpy(), "vae_logvar": logvar.numpy(),
                    "vae_latent": lat.numpy(), "vae_decoded": out.numpy()})

    # --- schedule and a DDIM round trip (float32 latents, float64 coefficients) ---
    ac = alphas_cumprod()
    grid = timestep_grid(31)
    z0 = torch.randn(4, 4, 8, 8)
    yy = torch.tensor([0, 1, 2, 10], dtype=torch.int64)

    def eps_fn(z, tt, c):
        return wrapper(z, tt, c)

    z_t = ddim_invert(eps_fn, z0, yy, grid, ac)
    z_back = ddim_sample(eps_fn, z_t, yy, grid, ac)
    tensors.update({"alphas_cumprod": ac, "ddim_z0": z0.numpy(), "ddim_y": yy.numpy(),
                    "ddim_grid": np.asarray(grid, dtype=np.int64), "ddim_zT": z_t.float().numpy(),
                    "ddim_z0_back": z_back.float().numpy()})
    ref = os.path.join(args.out, "reference.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, ref,
              metadata={"producer_script": "models/make_test_models.py", "seed": str(args.seed),
                        "ddim": "inversion then sampling, eta 0, guidance 1, grid round(linspace(0, 999, 32))"})
    print(f"wrote {ref}; round-trip rel L2 {float((z_back - z0).norm() / z0.norm()):.3e}")
    for f in sorted(os.listdir(args.out)):
        print(f"  {f}: {os.path.getsize(os.path.join(args.out, f)):,} bytes")


if __name__ == "__main__":
    main()
