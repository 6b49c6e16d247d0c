"""Generate the tiny random-weight ONNX fixtures and PyTorch reference tensors in models/test_data/.

Used by runtime-ort/tests/parity.rs. Writes to --out:
  tiny_dit.onnx          DiT from d3hr_models/dit.py: 4x8x8 latent, patch 2, hidden 32, depth 2, 2 heads,
                         10 classes + null class 10, learn_sigma=True (the graph keeps only the 4 eps channels).
                         x f32 [B,4,8,8], t i64 [B], y i64 [B] -> eps f32 [B,4,8,8]
  tiny_vae_encoder.onnx  KL-VAE encoder from d3hr_models/vae.py (base 8 channels): image [B,1,32,32] -> mean, logvar
  tiny_vae_decoder.onnx  KL-VAE decoder: latent [B,4,8,8] (unscaled) -> image [B,1,32,32]
  bad_names.onnx         negative fixture: inputs named latent, timestep, label -> eps (an Identity graph)
  bad_shape.onnx         negative fixture: a DiT for 3x8x8 latents (metadata latent_shape "3,8,8")
  reference.safetensors  PyTorch outputs: dit.x [3,4,8,8], dit.t [3] i64, dit.y [3] i64 (contains the null
                         class 10), dit.eps; enc.image [2,1,32,32], enc.mean, enc.logvar; dec.latent [2,4,8,8],
                         dec.image; alphas_cumprod (f64, DiT's linear schedule) and a DDIM round trip with
                         the tiny DiT on the paper's grid 0, 20, ..., 620 (models/d3hr_models/diffusion.py):
                         ddim.z0, ddim.y, ddim.grid, ddim.zT, ddim.z0_back
Weights are random with a fixed seed; the DiT's adaLN-Zero layers are re-initialised with non-zero values
(an untrained DiT's output is otherwise identically zero). Opset --opset (pinned, 17), IR version <= 9,
the ONNX full checker runs on every file, and onnxruntime must reproduce the references within --tol.

Example:
    python models/make_test_models.py
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from safetensors.numpy import save_file

from d3hr_models.diffusion import alphas_cumprod, ddim_invert, ddim_sample
from d3hr_models.dit import DiT, DiTConfig, EpsOnly
from d3hr_models.onnx_export import (
    DEC_INPUTS,
    DEC_OUTPUTS,
    DIT_INPUTS,
    DIT_OUTPUTS,
    ENC_INPUTS,
    ENC_OUTPUTS,
    MAX_IR_VERSION,
    check_io,
    export_graph,
    finalize,
    max_abs_err,
    ort_session,
    torch_outputs,
)
from d3hr_models.vae import KLVAE, VAEConfig

HERE = os.path.dirname(os.path.abspath(__file__))

#: made-up latent scaling factor written into the VAE and DiT metadata (the weights are untrained)
SCALING = 0.5


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(HERE, "test_data"), help="output folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (pinned)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and reference inputs")
    p.add_argument("--tol", type=float, default=1e-5, help="max abs error allowed between ORT and PyTorch")
    return p.parse_args()


def meta(latent_c: int, model: str) -> dict[str, str]:
    return {"latent_shape": f"{latent_c},8,8", "num_classes": "10", "null_class": "10",
            "timestep": "integer DDPM step index 0..999 (int64), linear beta 0.0001..0.02, 1000 steps",
            "scaling_factor": str(SCALING), "image_shape": "1,32,32", "model": model,
            "producer_script": "models/make_test_models.py"}


def tiny_dit(in_channels: int, hidden: int, depth: int) -> EpsOnly:
    cfg = DiTConfig(input_size=8, patch_size=2, in_channels=in_channels, hidden_size=hidden, depth=depth,
                    num_heads=2, num_classes=10, class_dropout_prob=0.1, learn_sigma=True)
    dit = DiT(cfg)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if name != "pos_embed":
                p.normal_(0.0, 0.2)
    return EpsOnly(dit.eval()).eval()


def verify(path: str, fn, inputs: dict[str, np.ndarray], tol: float) -> tuple[float, list[np.ndarray]]:
    ref = torch_outputs(fn, inputs)
    got = ort_session(path).run(None, inputs)
    err = max_abs_err(got, ref)
    if not err <= tol:
        raise SystemExit(f"{path}: max abs error {err:.3e} > {tol:.1e}")
    return err, ref


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    refs: dict[str, np.ndarray] = {}

    # --- tiny DiT ---
    dit = tiny_dit(4, 32, 2)
    path = os.path.join(args.out, "tiny_dit.onnx")
    export_graph(dit, (torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([3, 10])), path,
                 DIT_INPUTS, DIT_OUTPUTS, args.opset)
    finalize(path, {**meta(4, "tiny random DiT (tests only), epsilon channels only"),
                    "dit_config": str(dit.dit.cfg.to_dict())})
    check_io(path, DIT_INPUTS, DIT_OUTPUTS)
    inputs = {"x": rng.standard_normal((3, 4, 8, 8)).astype(np.float32),
              "t": np.array([0, 517, 999], dtype=np.int64),
              "y": np.array([3, 9, 10], dtype=np.int64)}
    err, (eps,) = verify(path, dit, inputs, args.tol)
    refs.update({"dit.x": inputs["x"], "dit.t": inputs["t"], "dit.y": inputs["y"], "dit.eps": eps})
    print(f"{path}: max abs err {err:.1e}")

    # --- tiny VAE ---
    vae = KLVAE(VAEConfig(base_channels=8, ch_mult=(1, 2, 4), groups=4, unshuffle=1)).eval()
    path = os.path.join(args.out, "tiny_vae_encoder.onnx")
    export_graph(vae.encoder, (torch.rand(2, 1, 32, 32) * 2 - 1,), path, ENC_INPUTS, ENC_OUTPUTS, args.opset)
    finalize(path, meta(4, "tiny random KL-VAE encoder (tests only); unscaled mean and logvar"))
    check_io(path, ENC_INPUTS, ENC_OUTPUTS)
    inputs = {"image": (rng.random((2, 1, 32, 32)) * 2 - 1).astype(np.float32)}
    err, (mean, logvar) = verify(path, vae.encoder, inputs, args.tol)
    refs.update({"enc.image": inputs["image"], "enc.mean": mean, "enc.logvar": logvar})
    print(f"{path}: max abs err {err:.1e}")

    path = os.path.join(args.out, "tiny_vae_decoder.onnx")
    export_graph(vae.decoder, (torch.randn(2, 4, 8, 8),), path, DEC_INPUTS, DEC_OUTPUTS, args.opset)
    finalize(path, meta(4, "tiny random KL-VAE decoder (tests only); unscaled latent in"))
    check_io(path, DEC_INPUTS, DEC_OUTPUTS)
    inputs = {"latent": rng.standard_normal((2, 4, 8, 8)).astype(np.float32)}
    err, (image,) = verify(path, vae.decoder, inputs, args.tol)
    refs.update({"dec.latent": inputs["latent"], "dec.image": image})
    print(f"{path}: max abs err {err:.1e}")

    # --- negative fixtures ---
    path = os.path.join(args.out, "bad_names.onnx")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["latent"], ["eps"])], "bad_names",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", 4, 8, 8]),
         helper.make_tensor_value_info("timestep", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", args.opset)],
                              producer_name="models/make_test_models.py")
    model.ir_version = MAX_IR_VERSION
    onnx.save(model, path)
    finalize(path, meta(4, "negative fixture: wrong input names"))
    print(f"{path}: written")

    path = os.path.join(args.out, "bad_shape.onnx")
    bad = tiny_dit(3, 16, 1)
    export_graph(bad, (torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([3, 10])), path,
                 DIT_INPUTS, DIT_OUTPUTS, args.opset)
    finalize(path, {**meta(3, "negative fixture: DiT for 3x8x8 latents"), "dit_config": str(bad.dit.cfg.to_dict())})
    print(f"{path}: written")

    # --- a DDIM round trip with the tiny DiT on the paper's grid (t = 0, 20, ..., 620) ---
    ac = alphas_cumprod()
    grid = list(range(0, 621, 20))
    z0 = torch.from_numpy(rng.standard_normal((4, 4, 8, 8)).astype(np.float32))
    yy = torch.tensor([0, 1, 2, 10], dtype=torch.int64)
    z_t = ddim_invert(dit, z0, yy, grid, ac, eps_at="target")
    z_back = ddim_sample(dit, z_t, yy, grid, ac)
    refs.update({"alphas_cumprod": ac, "ddim.z0": z0.numpy(), "ddim.y": yy.numpy(),
                 "ddim.grid": np.asarray(grid, dtype=np.int64), "ddim.zT": z_t.float().numpy(),
                 "ddim.z0_back": z_back.float().numpy()})

    ref_path = os.path.join(args.out, "reference.safetensors")
    # One metadata key: safetensors writes metadata in hash order, so several keys would make the
    # file's bytes differ from run to run.
    save_file({k: np.ascontiguousarray(v) for k, v in refs.items()}, ref_path,
              metadata={"producer": f"models/make_test_models.py --seed {args.seed}"})
    os.chmod(ref_path, 0o644)
    for f in sorted(os.listdir(args.out)):
        print(f"  {f}: {os.path.getsize(os.path.join(args.out, f)):,} bytes")


if __name__ == "__main__":
    main()
