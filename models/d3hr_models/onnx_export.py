"""Shared ONNX export helpers: export a module, cap the IR version, attach metadata, check, verify.

The graphs follow the IO contract that ``runtime-ort`` checks when it loads them:

- DiT:          ``x`` f32 [B,C,H,W] (scaled latent), ``t`` i64 [B] (DDPM step 0..999), ``y`` i64 [B]
                (class id; ``num_classes`` = null class)  ->  ``eps`` f32 [B,C,H,W]
- VAE encoder:  ``image`` f32 [B,Cimg,S,S] in [-1, 1]  ->  ``mean``, ``logvar`` f32 [B,C,h,w] (unscaled)
- VAE decoder:  ``latent`` f32 [B,C,h,w] (unscaled = z / scaling_factor)  ->  ``image`` f32 [B,Cimg,S,S]

The batch axis is dynamic and named ``batch``. Opset 17 by default; the IR version is capped at 9 so
that older ONNX Runtime builds load the files. ``metadata_props`` hold string values only.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import onnx
import torch
from torch import nn

#: Highest ONNX IR version written (ONNX Runtime 1.16+ reads IR 9).
MAX_IR_VERSION = 9
#: Default opset.
DEFAULT_OPSET = 17
#: Protobuf's hard limit; larger models must keep their weights in an external data file.
PROTOBUF_LIMIT = 2 ** 31 - 1

DIT_INPUTS = ["x", "t", "y"]
DIT_OUTPUTS = ["eps"]
ENC_INPUTS = ["image"]
ENC_OUTPUTS = ["mean", "logvar"]
DEC_INPUTS = ["latent"]
DEC_OUTPUTS = ["image"]


def export_graph(module: nn.Module, args: tuple, path: str, in_names: Sequence[str], out_names: Sequence[str],
                 opset: int = DEFAULT_OPSET) -> None:
    """TorchScript-based export (``dynamo=False``) with a dynamic ``batch`` axis on every input/output."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=list(in_names), output_names=list(out_names),
                          opset_version=opset, dynamic_axes={n: {0: "batch"} for n in [*in_names, *out_names]},
                          dynamo=False, do_constant_folding=True)


def _external_files(model: onnx.ModelProto) -> set[str]:
    files = set()
    for t in onnx.external_data_helper._get_all_tensors(model):  # noqa: SLF001 (public in spirit, stable)
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    files.add(e.value)
    return files


def finalize(path: str, meta: dict[str, str], external_data: str = "auto") -> dict:
    """Cap the IR version, replace ``metadata_props`` with ``meta``, run the full checker, save.

    ``external_data``: ``"auto"`` keeps the weights inside the .onnx file unless the model exceeds 2 GB,
    ``"always"`` / ``"never"`` force the choice. External weights go to one file ``<name>.onnx.data``
    next to the graph (any per-tensor files the exporter wrote are removed). Returns a small summary.
    """
    folder = os.path.dirname(os.path.abspath(path))
    # torch writes one file per tensor next to the graph when the model exceeds 2 GB; the full proto
    # cannot be serialised (not even ByteSize()) then, so size it as skeleton + external files
    model = onnx.load(path, load_external_data=False)
    old_external = _external_files(model)
    size = model.ByteSize() + sum(os.path.getsize(os.path.join(folder, f)) for f in old_external)
    if old_external:
        onnx.load_external_data_for_model(model, folder)
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    use_external = external_data == "always" or (external_data == "auto" and size >= PROTOBUF_LIMIT - 2 ** 20)
    if external_data == "never" and size >= PROTOBUF_LIMIT:
        raise SystemExit(f"{path}: {size / 2**30:.2f} GiB does not fit in one protobuf; use external data")
    data_name = os.path.basename(path) + ".data"
    for f in old_external:
        fp = os.path.join(folder, f)
        if os.path.exists(fp) and f != data_name:
            os.remove(fp)
    if use_external:
        data_path = os.path.join(folder, data_name)
        if os.path.exists(data_path):
            os.remove(data_path)
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name,
                  size_threshold=1024)
        os.chmod(data_path, 0o644)  # onnx creates it owner-only
        onnx.checker.check_model(path, full_check=True)  # path form: handles > 2 GB
    else:
        if os.path.exists(os.path.join(folder, data_name)):
            os.remove(os.path.join(folder, data_name))
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
    total = os.path.getsize(path) + (os.path.getsize(os.path.join(folder, data_name)) if use_external else 0)
    return {"path": path, "bytes": total, "external_data": use_external, "ir_version": model.ir_version}


def read_metadata(path: str) -> dict[str, str]:
    """metadata_props of an .onnx file (without loading external weights)."""
    model = onnx.load(path, load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def ort_session(path: str, threads: int = 1, device: str = "cpu"):
    """An onnxruntime session: CPU EP (``intra_op_num_threads`` = threads, ORT_ENABLE_ALL), or CUDA EP.

    With ``device="cuda"`` the CUDA execution provider must be available (onnxruntime-gpu); it is an
    error otherwise rather than a silent fall-back to the CPU.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SystemExit("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        providers = ["CUDAExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(path, sess_options=so, providers=providers)
    if device == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        raise SystemExit("CUDAExecutionProvider could not be registered")
    return sess


def max_abs_err(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    if len(got) != len(ref):
        raise ValueError(f"{len(got)} outputs vs {len(ref)} references")
    return max(float(np.abs(np.asarray(g, dtype=np.float64) - np.asarray(r, dtype=np.float64)).max())
               for g, r in zip(got, ref))


def torch_outputs(fn: Callable, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a PyTorch callable on numpy inputs (in order) and return numpy outputs as a list."""
    with torch.no_grad():
        out = fn(*[torch.from_numpy(v) for v in inputs.values()])
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().cpu().numpy() for o in out]


def check_io(path: str, in_names: Sequence[str], out_names: Sequence[str]) -> None:
    """Fail unless the graph's input/output names are exactly the contract's."""
    model = onnx.load(path, load_external_data=False)
    ins = [i.name for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    if ins != list(in_names) or outs != list(out_names):
        raise SystemExit(f"{path}: inputs {ins} outputs {outs}, expected {list(in_names)} -> {list(out_names)}")
