"""Build an int8 DiT graph from the fp32 one and measure what it costs and gains.

ONNX Runtime's dynamic quantization: every MatMul/Gemm with a constant weight gets int8 weights
(symmetric, per tensor) and uint8 activations quantized on the fly (DynamicQuantizeLinear →
MatMulInteger); everything else stays fp32. The graph keeps the fp32 graph's inputs, outputs and
metadata, so it is a drop-in for the DiT: ``d3hr-cli --onnx dit_int8.onnx distill …``.

Checks and measures, on random inputs (x ~ N(0, 1), t uniform over 0..999, y over 0..10):
  * ε error against the fp32 graph: relative RMS, ‖ε_int8 − ε_fp32‖ / ‖ε_fp32‖ over the batch
    (fails above --max-rel-err);
  * speed: --rounds interleaved rounds of --iters passes of each graph at --batch, one session of
    --threads threads each, reported as passes/s and image-steps/s (median over rounds).
The sample quality of the int8 graph is measured by ``eval_dit.py --onnx``.

Example:
    python models/fashion_mnist/quantize_dit.py --json results/2026-11-28-speed/int8_dit.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from d3hr_fashion_mnist._common import ONNX_DIR, log
from d3hr_models.machine import machine_info
from d3hr_models.onnx_export import finalize, ort_session, read_metadata


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=os.path.join(ONNX_DIR, "dit.onnx"), help="fp32 DiT graph")
    p.add_argument("--out", default=os.path.join(ONNX_DIR, "dit_int8.onnx"), help="int8 graph to write")
    p.add_argument("--batch", type=int, default=64, help="batch for the error check and the timing")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of each session")
    p.add_argument("--iters", type=int, default=40, help="passes per graph and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (0 = no timing)")
    p.add_argument("--max-rel-err", type=float, default=0.05, help="fail above this relative RMS ε error")
    p.add_argument("--json", default="", help="write the measurements here")
    return p.parse_args()


def quantize(src: str, out: str) -> dict:
    """Write the int8 graph; keeps ``src``'s metadata and caps the IR version like every export."""
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_dynamic(pre, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    meta = read_metadata(src)
    meta["quantization"] = "onnxruntime dynamic: int8 weights (per tensor), uint8 activations, MatMul/Gemm"
    return finalize(out, meta, external_data="never")


def main() -> None:
    args = parse_args()
    info = quantize(args.src, args.out)
    log(f"wrote {args.out} ({info['bytes'] / 1e6:.1f} MB; fp32 graph {os.path.getsize(args.src) / 1e6:.1f} MB)")
    rng = np.random.default_rng(0)
    b = args.batch
    feeds = {"x": rng.standard_normal((b, 4, 8, 8)).astype(np.float32),
             "t": rng.integers(0, 1000, b).astype(np.int64),
             "y": rng.integers(0, 11, b).astype(np.int64)}
    graphs = {"fp32": ort_session(args.src, args.threads), "int8": ort_session(args.out, args.threads)}
    ref, got = (graphs[k].run(None, feeds)[0] for k in ("fp32", "int8"))
    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    log(f"ε relative RMS error int8 vs fp32: {rel:.4f} (batch {b})")
    result = {"src": args.src, "out": args.out, "bytes": info["bytes"], "batch": b, "threads": args.threads,
              "eps_rel_rms_err": rel, "machine": machine_info(), "rounds": []}
    for r in range(args.rounds):
        row = {}
        for name, s in graphs.items():
            for _ in range(3):
                s.run(None, feeds)
            t0 = time.perf_counter()
            for _ in range(args.iters):
                s.run(None, feeds)
            row[name] = args.iters / (time.perf_counter() - t0)
        log(f"round {r}: fp32 {row['fp32']:.2f} passes/s, int8 {row['int8']:.2f} passes/s "
            f"({row['int8'] / row['fp32']:.2f}x)")
        result["rounds"].append(row)
    if args.rounds:
        med = {k: float(np.median([row[k] for row in result["rounds"]])) for k in graphs}
        ratio = float(np.median([row["int8"] / row["fp32"] for row in result["rounds"]]))
        result["median_passes_per_s"] = med
        result["median_image_steps_per_s"] = {k: v * b for k, v in med.items()}
        result["median_speedup"] = ratio
        log(f"median: fp32 {med['fp32'] * b:.0f}, int8 {med['int8'] * b:.0f} image-steps/s ({ratio:.2f}x)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if not rel <= args.max_rel_err:
        raise SystemExit(f"{args.out}: ε relative error {rel:.4f} > {args.max_rel_err}")


if __name__ == "__main__":
    main()
