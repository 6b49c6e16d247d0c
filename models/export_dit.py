"""Export a class-conditional DiT to ONNX (the ``runtime-ort`` contract): x, t, y -> eps.

Sources (--ckpt):
  * an official DiT checkpoint (facebookresearch/DiT, e.g. DiT-XL-2-256x256.pt): a plain state dict or a
    dict with an "ema" / "model" entry. --preset (XL/2, L/2, B/2, S/2), --image-size and --num-classes
    describe it; without --preset the architecture is inferred from the tensor shapes.
  * a diffusers DiTPipeline folder (e.g. a download of facebook/DiT-XL-2-256) or its transformer/
    sub-folder: config.json + diffusion_pytorch_model[.fp16].safetensors|.bin. The diffusers key names
    (pos_embed.proj, transformer_blocks.N.norm1.emb..., attn1.to_q/k/v, ff.net, proj_out_1/2) are mapped
    to the official layout; q, k, v are concatenated into qkv.
  * a checkpoint written by models/d3hr_models (a dict with "config" and "ema"/"model").
  * --random: no checkpoint; random weights for --preset (for benchmarks).

Time embedding: the official DiT uses frequencies 10000^(-i/128); diffusers' DiT uses 10000^(-i/127)
(``Timesteps(downscale_freq_shift=1)``) and LayerNorm eps 1e-5 (not 1e-6) before each MLP. The converted
weights are the same, but the two functions differ. --time-embedding chooses which one the graph computes;
the default is the convention of the source (diffusers for a diffusers folder, official otherwise). The
D3HR authors' code runs the diffusers DiTPipeline, so their numbers come from the diffusers variant.

Graph: inputs x f32 [B,C,H,W] (scaled latent), t i64 [B] (DDPM step 0..999), y i64 [B] (class id;
num_classes = null class); output eps f32 [B,C,H,W] (learned-variance channels dropped inside the graph).
Dynamic batch axis "batch"; opset 17; IR version <= 9; metadata_props latent_shape, num_classes,
null_class, timestep, scaling_factor, image_shape, model, producer_script, time_embedding, dit_config.
--fp16 stores fp16 weights and computes in fp16, with float32 inputs/outputs (casts inside the graph).
Graphs over 2 GB are written with their weights in one external file <out>.data (--external-data).

Other modes:
  --verify-keys CKPT  compare the parameter names and shapes of --preset with an official checkpoint
  --self-test         check our DiT-XL/2 key set against the official key patterns (no file needed) and
                      test the diffusers conversion on a small random diffusers DiT (needs diffusers)

Examples:
    python models/export_dit.py --ckpt DiT-XL-2-256x256.pt --preset XL/2 --out dit_xl2.onnx --check
    python models/export_dit.py --ckpt ~/hf/DiT-XL-2-256 --out dit_xl2_fp16.onnx --fp16 --check
    python models/export_dit.py --random --preset S/2 --out models/work/bench/dit_s2.onnx
    python models/export_dit.py --self-test
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import tempfile

import numpy as np
import torch
from torch import nn

from d3hr_models.dit import PRESETS, DiT, DiTConfig, TimestepEmbedder, preset
from d3hr_models.onnx_export import (
    DEFAULT_OPSET,
    DIT_INPUTS,
    DIT_OUTPUTS,
    check_io,
    export_graph,
    finalize,
    max_abs_err,
    ort_session,
)

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = "models/export_dit.py"
#: SD VAE latent scaling factor (the VAE that the official DiT checkpoints were trained with)
SD_SCALING_FACTOR = 0.18215
TIMESTEP_DOC = "integer DDPM step index 0..999 (int64), linear beta 0.0001..0.02, 1000 steps"


# --------------------------------------------------------------------------------------------------
# model variants used for export
# --------------------------------------------------------------------------------------------------

class ExportTimestepEmbedder(TimestepEmbedder):
    """DiT's timestep embedder with a selectable frequency divisor and a cast to the MLP's dtype.

    ``freq_shift = 0``: official DiT, f_i = 10000^(-i / half). ``freq_shift = 1``: diffusers' DiT,
    f_i = 10000^(-i / (half - 1)). The sinusoids are always computed in float32 (t up to 999 needs it)
    and then cast to the weights' dtype (fp16 export). Parameter names are unchanged (mlp.0, mlp.2).
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, freq_shift: int = 0):
        super().__init__(hidden_size, frequency_embedding_size)
        self.freq_shift = freq_shift

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        dim = self.frequency_embedding_size
        half = dim // 2
        exponent = -math.log(10000.0) * torch.arange(0, half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(exponent / (half - self.freq_shift))
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def set_time_embedding(dit: DiT, kind: str, diffusers_norm_eps: float = 1e-5) -> None:
    """Switch ``dit`` to the official or diffusers time embedding (and MLP LayerNorm eps).

    diffusers' DiT normalises before each MLP with ``LayerNorm(dim, eps=config.norm_eps)`` (1e-5 unless
    the config says otherwise); the official DiT uses 1e-6 everywhere.
    """
    old = dit.t_embedder
    new = ExportTimestepEmbedder(old.mlp[0].out_features, old.frequency_embedding_size,
                                 freq_shift=1 if kind == "diffusers" else 0)
    new.load_state_dict(old.state_dict())
    new.to(old.mlp[0].weight.device, old.mlp[0].weight.dtype)
    dit.t_embedder = new
    for block in dit.blocks:  # our norm2 is diffusers' norm3 (LayerNorm(dim, norm_eps=1e-5))
        block.norm2.eps = diffusers_norm_eps if kind == "diffusers" else 1e-6


class EpsGraph(nn.Module):
    """x, t, y -> the first C output channels (eps), float32 in and out whatever the weights' dtype."""

    def __init__(self, dit: DiT):
        super().__init__()
        self.dit = dit

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dtype = self.dit.x_embedder.proj.weight.dtype
        out = self.dit(x.to(dtype), t, y)[:, : self.dit.in_channels]
        return out.float()


def randomize(dit: nn.Module, std: float, seed: int) -> None:
    """Every parameter ~ N(0, std^2), pos_embed kept (adaLN-Zero init would make the output zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=g) * std)


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------

def unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    """An official checkpoint is a state dict or {"ema": sd, "model": sd, ...}; prefer the EMA weights."""
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()
          if isinstance(v, torch.Tensor)}
    if not sd:
        raise SystemExit("checkpoint holds no tensors")
    return sd


def infer_config(sd: dict[str, torch.Tensor]) -> DiTConfig:
    """Architecture from tensor shapes (heads from the preset with the same width)."""
    w = sd["x_embedder.proj.weight"]
    hidden, in_ch, patch = w.shape[0], w.shape[1], w.shape[2]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    out_dim = sd["final_layer.linear.weight"].shape[0] // (patch * patch)
    rows = sd["y_embedder.embedding_table.weight"].shape[0]
    heads = {p["hidden_size"]: p["num_heads"] for p in PRESETS.values()}.get(hidden)
    if heads is None:
        raise SystemExit(f"hidden size {hidden} matches no preset; pass --preset")
    if "pos_embed" in sd:
        tokens = sd["pos_embed"].shape[1]
    else:
        raise SystemExit("no pos_embed in the checkpoint; pass --preset and --image-size")
    grid = int(round(math.sqrt(tokens)))
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / hidden
    return DiTConfig(input_size=grid * patch, patch_size=patch, in_channels=in_ch, hidden_size=hidden, depth=depth,
                     num_heads=heads, mlp_ratio=mlp_ratio, class_dropout_prob=0.1, num_classes=rows - 1,
                     learn_sigma=out_dim == 2 * in_ch)


def diffusers_files(folder: str) -> tuple[str, str]:
    """(config.json, weights file) of a diffusers DiT: the pipeline folder or its transformer/ folder."""
    for d in (os.path.join(folder, "transformer"), folder):
        cfg = os.path.join(d, "config.json")
        if os.path.isfile(cfg):
            for pattern in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                            "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin",
                            "*.safetensors", "*.bin"):
                hits = sorted(glob.glob(os.path.join(d, pattern)))
                if hits:
                    return cfg, hits[0]
            raise SystemExit(f"{d}: config.json but no diffusion_pytorch_model.safetensors|.bin")
    raise SystemExit(f"{folder}: neither transformer/config.json nor config.json found")


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def convert_diffusers(sd: dict[str, torch.Tensor], config: dict) -> tuple[DiTConfig, dict[str, torch.Tensor]]:
    """diffusers DiTTransformer2DModel / Transformer2DModel (patch mode) state dict -> official DiT layout.

    Mapping (inverse of diffusers' scripts/convert_dit_to_diffusers.py):
      pos_embed.proj.*                                        -> x_embedder.proj.*
      transformer_blocks.0.norm1.emb.timestep_embedder.linear_1/2.*  -> t_embedder.mlp.0/2.*
      transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight -> y_embedder.embedding_table.weight
      transformer_blocks.N.norm1.linear.*                     -> blocks.N.adaLN_modulation.1.*
      transformer_blocks.N.attn1.to_q/to_k/to_v.*  (concat)   -> blocks.N.attn.qkv.*
      transformer_blocks.N.attn1.to_out.0.*                   -> blocks.N.attn.proj.*
      transformer_blocks.N.ff.net.0.proj.* / ff.net.2.*       -> blocks.N.mlp.fc1.* / fc2.*
      proj_out_1.* / proj_out_2.*                             -> final_layer.adaLN_modulation.1.* / linear.*
    Every block of a diffusers DiT holds its own copy of the timestep/class embedders (block 0's also feeds
    the final layer); the official model has one, so the copies must be identical.
    """
    heads = int(config["num_attention_heads"])
    hidden = heads * int(config["attention_head_dim"])
    depth = int(config["num_layers"])
    in_ch = int(config.get("in_channels", 4))
    out_ch = int(config.get("out_channels") or in_ch)
    patch = int(config["patch_size"])
    if config.get("norm_type", "ada_norm_zero") != "ada_norm_zero":
        raise SystemExit(f"norm_type {config.get('norm_type')!r}: not a class-conditional DiT")
    rows = sd["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"].shape[0]
    num_classes = int(config.get("num_embeds_ada_norm") or rows - 1)
    if rows not in (num_classes, num_classes + 1):
        raise SystemExit(f"class table has {rows} rows for {num_classes} classes")
    mlp_ratio = sd["transformer_blocks.0.ff.net.0.proj.weight"].shape[0] / hidden
    cfg = DiTConfig(input_size=int(config["sample_size"]), patch_size=patch, in_channels=in_ch, hidden_size=hidden,
                    depth=depth, num_heads=heads, mlp_ratio=mlp_ratio,
                    class_dropout_prob=0.1 if rows == num_classes + 1 else 0.0, num_classes=num_classes,
                    learn_sigma=out_ch == 2 * in_ch)
    if out_ch not in (in_ch, 2 * in_ch):
        raise SystemExit(f"out_channels {out_ch} is neither C nor 2C for C = {in_ch}")

    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise SystemExit(f"diffusers checkpoint lacks {key}")
        used.add(key)
        return sd[key]

    out: dict[str, torch.Tensor] = {}
    for s in ("weight", "bias"):
        out[f"x_embedder.proj.{s}"] = take(f"pos_embed.proj.{s}")
        out[f"final_layer.adaLN_modulation.1.{s}"] = take(f"proj_out_1.{s}")
        out[f"final_layer.linear.{s}"] = take(f"proj_out_2.{s}")
    emb = "transformer_blocks.{}.norm1.emb."
    shared = {"timestep_embedder.linear_1.weight": "t_embedder.mlp.0.weight",
              "timestep_embedder.linear_1.bias": "t_embedder.mlp.0.bias",
              "timestep_embedder.linear_2.weight": "t_embedder.mlp.2.weight",
              "timestep_embedder.linear_2.bias": "t_embedder.mlp.2.bias",
              "class_embedder.embedding_table.weight": "y_embedder.embedding_table.weight"}
    for src, dst in shared.items():
        ref = take(emb.format(0) + src)
        for n in range(1, depth):
            other = take(emb.format(n) + src)
            if not torch.equal(other, ref):
                raise SystemExit(f"{emb.format(n) + src} differs from block 0's copy: this diffusers DiT has "
                                 "per-block embedders and cannot be expressed in the official layout")
        out[dst] = ref
    for n in range(depth):
        b, o = f"transformer_blocks.{n}.", f"blocks.{n}."
        for s in ("weight", "bias"):
            out[o + f"adaLN_modulation.1.{s}"] = take(b + f"norm1.linear.{s}")
            out[o + f"attn.qkv.{s}"] = torch.cat([take(b + f"attn1.to_{q}.{s}") for q in ("q", "k", "v")], dim=0)
            out[o + f"attn.proj.{s}"] = take(b + f"attn1.to_out.0.{s}")
            out[o + f"mlp.fc1.{s}"] = take(b + f"ff.net.0.proj.{s}")
            out[o + f"mlp.fc2.{s}"] = take(b + f"ff.net.2.{s}")
    if "pos_embed.pos_embed" in sd:
        used.add("pos_embed.pos_embed")
        out["pos_embed"] = sd["pos_embed.pos_embed"]
    left = sorted(set(sd) - used)
    if left:
        raise SystemExit(f"unmapped diffusers keys: {left[:8]}{' ...' if len(left) > 8 else ''}")
    return cfg, out


def load_model(args: argparse.Namespace) -> tuple[DiT, str, str]:
    """-> (model in float32 eval mode, source kind, description)."""
    overrides = dict(input_size=args.image_size // 8, num_classes=args.num_classes)
    if args.random:
        if not args.preset:
            raise SystemExit("--random needs --preset")
        dit = DiT(preset(args.preset, **overrides))
        randomize(dit, args.random_std, args.seed)
        return dit.eval(), "random", f"random DiT-{args.preset} (N(0, {args.random_std}^2) weights, seed {args.seed})"
    if not args.ckpt:
        raise SystemExit("give --ckpt (or --random)")
    if os.path.isdir(args.ckpt):
        cfg_path, weights = diffusers_files(args.ckpt)
        with open(cfg_path) as f:
            config = json.load(f)
        cfg, sd = convert_diffusers(load_tensors(weights), config)
        dit = DiT(cfg)
        if "pos_embed" not in sd:  # diffusers keeps the fixed sin-cos table as a non-persistent buffer
            sd["pos_embed"] = dit.pos_embed.detach().clone()
        dit.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        dit.diffusers_norm_eps = float(config.get("norm_eps", 1e-5))
        return dit.eval(), "diffusers", f"diffusers DiT from {os.path.basename(os.path.normpath(args.ckpt))}"
    obj = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "config" in obj and isinstance(obj["config"], dict):  # d3hr_models checkpoint
        cfg = DiTConfig(**obj["config"])
        sd = obj["ema"] if "ema" in obj else obj.get("model", obj.get("state_dict"))
        dit = DiT(cfg)
        dit.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        if args.scaling_factor == SD_SCALING_FACTOR:
            print("note: d3hr_models checkpoint; pass --scaling-factor (and --image-shape) of its VAE, the metadata "
                  f"now says the SD VAE's {SD_SCALING_FACTOR}")
        return dit.eval(), "d3hr", f"d3hr_models DiT from {os.path.basename(args.ckpt)}"
    sd = unwrap_state_dict(obj)
    cfg = preset(args.preset, **overrides) if args.preset else infer_config(sd)
    dit = DiT(cfg)
    dit.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    name = f"DiT-{args.preset}" if args.preset else "DiT"
    return dit.eval(), "official", f"official {name} from {os.path.basename(args.ckpt)}"


# --------------------------------------------------------------------------------------------------
# key verification
# --------------------------------------------------------------------------------------------------

def official_xl2_keys(depth: int = 28, hidden: int = 1152, tokens: int = 256, classes: int = 1000,
                      in_ch: int = 4, patch: int = 2) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of facebookresearch/DiT's DiT-XL/2 (256 px, 1000 classes, learn_sigma),
    written out from the official models.py / the released DiT-XL-2-256x256.pt."""
    d = hidden
    keys: dict[str, tuple[int, ...]] = {
        "pos_embed": (1, tokens, d),
        "x_embedder.proj.weight": (d, in_ch, patch, patch), "x_embedder.proj.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256), "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d), "t_embedder.mlp.2.bias": (d,),
        "y_embedder.embedding_table.weight": (classes + 1, d),
        "final_layer.linear.weight": (patch * patch * 2 * in_ch, d), "final_layer.linear.bias": (patch * patch * 2 * in_ch,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d), "final_layer.adaLN_modulation.1.bias": (2 * d,),
    }
    for n in range(depth):
        b = f"blocks.{n}."
        keys.update({
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
            b + "adaLN_modulation.1.weight": (6 * d, d), b + "adaLN_modulation.1.bias": (6 * d,),
        })
    return keys


def meta_state_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of our DiT's state dict without allocating the weights."""
    with torch.device("meta"):
        model = DiT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def compare_keys(ours: dict[str, tuple[int, ...]], theirs: dict[str, tuple[int, ...]], label: str) -> bool:
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    wrong = sorted(k for k in set(ours) & set(theirs) if tuple(ours[k]) != tuple(theirs[k]))
    for title, items in (("in the checkpoint but not in our model", missing),
                         ("in our model but not in the checkpoint", extra)):
        if items:
            print(f"  {len(items)} keys {title}: {items[:10]}{' ...' if len(items) > 10 else ''}")
    for k in wrong[:10]:
        print(f"  shape mismatch {k}: ours {list(ours[k])}, checkpoint {list(theirs[k])}")
    ok = not (missing or extra or wrong)
    n_params = sum(int(np.prod(s)) for s in theirs.values())
    print(f"{label}: {len(theirs)} keys, {n_params:,} values -> {'MATCH' if ok else 'MISMATCH'}")
    return ok


def verify_keys(args: argparse.Namespace) -> bool:
    if not args.preset:
        raise SystemExit("--verify-keys needs --preset")
    sd = unwrap_state_dict(torch.load(args.verify_keys, map_location="cpu", weights_only=True))
    theirs = {k: tuple(v.shape) for k, v in sd.items()}
    ours = meta_state_shapes(preset(args.preset, input_size=args.image_size // 8, num_classes=args.num_classes))
    return compare_keys(ours, theirs, f"DiT-{args.preset} vs {args.verify_keys}")


def self_test_keys() -> bool:
    ok = True
    cfg = preset("XL/2", input_size=32, num_classes=1000)
    ours = meta_state_shapes(cfg)
    ok &= compare_keys(ours, official_xl2_keys(), "our DiT-XL/2 (256 px) vs the official key patterns")
    spot = {"x_embedder.proj.weight": (1152, 4, 2, 2), "pos_embed": (1, 256, 1152),
            "t_embedder.mlp.0.weight": (1152, 256), "y_embedder.embedding_table.weight": (1001, 1152),
            "blocks.27.adaLN_modulation.1.weight": (6912, 1152), "final_layer.linear.weight": (32, 1152)}
    for k, s in spot.items():
        if ours.get(k) != s:
            print(f"  {k}: {ours.get(k)} != {s}")
            ok = False
    n = sum(int(np.prod(s)) for k, s in ours.items() if k != "pos_embed")
    print(f"  DiT-XL/2 trainable values (without pos_embed): {n:,} (paper: 675M)")
    ok &= compare_keys(meta_state_shapes(preset("XL/2", input_size=64, num_classes=1000)),
                       official_xl2_keys(tokens=1024), "our DiT-XL/2 (512 px) vs the official key patterns")
    return ok


def self_test_diffusers(tol: float, opset: int) -> bool:
    """Random tiny diffusers DiT -> save_pretrained -> convert -> our DiT (and ONNX): same outputs."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    ref = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        # the official layout has one timestep/class embedder; diffusers keeps identical copies per block
        emb0 = ref.transformer_blocks[0].norm1.emb.state_dict()
        for blk in ref.transformer_blocks[1:]:
            blk.norm1.emb.load_state_dict(emb0)
    x = torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 1, 500, 999])
    y = torch.tensor([0, 9, 10, 3])  # 10 = null class
    with torch.no_grad():
        want = ref(x, timestep=t, class_labels=y).sample
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for safe in (True, False):
            folder = os.path.join(tmp, f"pipe_{safe}")
            ref.save_pretrained(os.path.join(folder, "transformer"), safe_serialization=safe)
            ns = argparse.Namespace(random=False, ckpt=folder, preset=None, image_size=256, num_classes=1000)
            dit, kind, _ = load_model(ns)
            assert kind == "diffusers" and dit.out_channels == 8
            with torch.no_grad():
                plain = dit(x, t, y)  # d3hr_models.dit's own (official) time embedding
                set_time_embedding(dit, "official")
                same = float((dit(x, t, y) - plain).abs().max())
                err_official = float((dit(x, t, y) - want).abs().max())
                set_time_embedding(dit, "diffusers", dit.diffusers_norm_eps)
                got = dit(x, t, y)
            err = float((got - want).abs().max())
            fmt = "safetensors" if safe else ".bin"
            print(f"diffusers ({fmt}) -> official layout: max abs err {err:.2e} with the diffusers time embedding "
                  f"(tol {tol:.0e}); {err_official:.2e} with the official one (expected to differ)")
            ok &= err <= tol
            print(f"ExportTimestepEmbedder('official') vs d3hr_models.dit.TimestepEmbedder: max abs err {same:.2e}")
            ok &= same <= 1e-6
        path = os.path.join(tmp, "tiny.onnx")
        export_graph(EpsGraph(dit).eval(), (x, t, y), path, DIT_INPUTS, DIT_OUTPUTS, opset)
        finalize(path, {"producer_script": SCRIPT})
        onnx_eps = ort_session(path).run(None, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})[0]
        err = float(np.abs(onnx_eps - want[:, :4].numpy()).max())
        print(f"diffusers model vs onnxruntime on the converted graph (eps channels): max abs err {err:.2e}")
        ok &= err <= tol
    return ok


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="official DiT .pt, diffusers DiTPipeline folder (or its transformer/), or a "
                                  "d3hr_models checkpoint")
    p.add_argument("--out", help="output .onnx path (required unless --verify-keys / --self-test)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="DiT size for official checkpoints / --random "
                                                            "(inferred from the shapes when omitted)")
    p.add_argument("--image-size", type=int, default=256, choices=(256, 512),
                   help="image size in pixels; the latent is image-size / 8 (default 256)")
    p.add_argument("--num-classes", type=int, default=1000, help="number of classes (default 1000; null = this)")
    p.add_argument("--time-embedding", choices=("auto", "official", "diffusers"), default="auto",
                   help="timestep frequencies 10000^(-i/128) (official) or 10000^(-i/127) (diffusers); "
                        "auto = diffusers for a diffusers folder, official otherwise")
    p.add_argument("--scaling-factor", type=float, default=SD_SCALING_FACTOR,
                   help="VAE latent scaling factor written to the metadata (default 0.18215, SD VAE)")
    p.add_argument("--image-shape", help="metadata image_shape \"C,S,S\" of the VAE images (default 3,8h,8h for a "
                                         "latent of side h, i.e. the SD VAE)")
    p.add_argument("--fp16", action="store_true", help="fp16 weights and compute; float32 inputs/outputs")
    p.add_argument("--external-data", choices=("auto", "always", "never"), default="auto",
                   help="weights in <out>.data: auto = only when the graph exceeds 2 GB (default)")
    p.add_argument("--random", action="store_true", help="random weights for --preset (benchmarks)")
    p.add_argument("--random-std", type=float, default=0.02, help="std of the random weights (default 0.02)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random weights and --check inputs (default 0)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default 17)")
    p.add_argument("--check", action="store_true",
                   help="run onnxruntime and PyTorch (float32) on random inputs (batch 1 and 3) and compare")
    p.add_argument("--tol", type=float, default=None,
                   help="max abs error for --check / --self-test (default 1e-4; 5e-2 with --fp16)")
    p.add_argument("--threads", type=int, default=1, help="torch / onnxruntime CPU threads (default 1)")
    p.add_argument("--verify-keys", metavar="CKPT",
                   help="compare --preset's parameter names and shapes with an official checkpoint and exit")
    p.add_argument("--self-test", action="store_true",
                   help="check the DiT-XL/2 key set against the official patterns and test the diffusers "
                        "conversion on a small random model, then exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tol = args.tol if args.tol is not None else (5e-2 if args.fp16 else 1e-4)
    if args.self_test:
        ok = self_test_keys()
        ok &= self_test_diffusers(tol, args.opset)
        print("self-test", "passed" if ok else "FAILED")
        raise SystemExit(0 if ok else 1)
    if args.verify_keys:
        raise SystemExit(0 if verify_keys(args) else 1)
    if not args.out:
        raise SystemExit("--out is required")

    dit, kind, desc = load_model(args)
    time_emb = args.time_embedding if args.time_embedding != "auto" else ("diffusers" if kind == "diffusers" else "official")
    set_time_embedding(dit, time_emb, getattr(dit, "diffusers_norm_eps", 1e-5))
    cfg = dit.cfg
    c, h = cfg.in_channels, cfg.input_size
    ref_model = EpsGraph(dit).eval()
    if args.fp16:
        import copy
        export_model = EpsGraph(copy.deepcopy(dit).half()).eval()
    else:
        export_model = ref_model
    print(f"{desc}: {sum(p.numel() for p in dit.parameters()):,} parameters, latent {c}x{h}x{h}, "
          f"{cfg.num_classes} classes, time embedding {time_emb}, {'fp16' if args.fp16 else 'fp32'}", flush=True)

    ex = (torch.randn(2, c, h, h), torch.tensor([10, 500]), torch.tensor([1, cfg.null_class]))
    export_graph(export_model, ex, args.out, DIT_INPUTS, DIT_OUTPUTS, args.opset)
    meta = {
        "model": f"{desc}; epsilon channels only{' (fp16 weights, fp32 IO)' if args.fp16 else ''}",
        "producer_script": SCRIPT,
        "latent_shape": f"{c},{h},{h}",
        "num_classes": str(cfg.num_classes),
        "null_class": str(cfg.null_class),
        "timestep": TIMESTEP_DOC,
        "scaling_factor": f"{args.scaling_factor:.8g}",
        "image_shape": args.image_shape or f"3,{h * 8},{h * 8}",
        "prediction": "epsilon",
        "time_embedding": f"{time_emb} (frequencies 10000^(-i/{127 if time_emb == 'diffusers' else 128}), i = 0..127)",
        "dit_config": json.dumps(cfg.to_dict()),
        "weights_dtype": "float16" if args.fp16 else "float32",
    }
    info = finalize(args.out, meta, args.external_data)
    check_io(args.out, DIT_INPUTS, DIT_OUTPUTS)
    print(f"wrote {args.out}: {info['bytes'] / 2**20:.1f} MiB"
          f"{' (weights in ' + os.path.basename(args.out) + '.data)' if info['external_data'] else ''}", flush=True)

    if args.check:
        sess = ort_session(args.out, args.threads)
        rng = np.random.default_rng(args.seed)
        worst = 0.0
        for b in (1, 3):
            inputs = {"x": rng.standard_normal((b, c, h, h)).astype(np.float32),
                      "t": rng.integers(0, 1000, b).astype(np.int64),
                      "y": np.append(rng.integers(0, cfg.num_classes, b - 1), cfg.null_class).astype(np.int64)}
            got = sess.run(None, inputs)
            with torch.no_grad():
                want = ref_model(*[torch.from_numpy(v) for v in inputs.values()]).numpy()
            err = max_abs_err(got, [want])
            print(f"check batch {b}: max abs err {err:.3e} (|eps| max {np.abs(want).max():.3f})")
            worst = max(worst, err)
        if not worst <= tol:
            raise SystemExit(f"onnxruntime differs from PyTorch float32 by {worst:.3e} > {tol:.1e}")
        print(f"check passed (tol {tol:.0e})")


if __name__ == "__main__":
    main()
