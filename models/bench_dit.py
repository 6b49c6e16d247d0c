"""Throughput of DiT forward passes: onnxruntime (Python API) vs PyTorch eager, same graph, batch, threads.

The model is a randomly initialised DiT (--preset, default S/2; 256 px -> 4x32x32 latent, 1000 classes;
weights N(0, 0.02^2), seed --seed), exported once by models/export_dit.py to --onnx (default
models/work/bench/dit_<preset>_<size>[_fp16].onnx, git-ignored) and re-exported with --reexport.
PyTorch runs the same weights through the same wrapper (x, t, y -> eps channels only); one pass of each is
compared as a sanity check (max_abs_diff in the JSON).

Each engine gets --warmup untimed passes, then --iters timed passes on fixed inputs (batch --batch:
random latents, random steps 0..999, random classes with one null class). Reported per engine: passes/s,
images/s (= passes/s * batch), median and min milliseconds per pass.

CPU (--device cpu, default): onnxruntime CPUExecutionProvider with intra_op_num_threads = --threads,
inter_op 1, ORT_ENABLE_ALL; PyTorch with torch.set_num_threads(--threads), no_grad, float32.
CUDA (--device cuda, untested here): PyTorch on the GPU in --precision fp32 or fp16 (synchronised timing);
onnxruntime with CUDAExecutionProvider (needs onnxruntime-gpu; it is an error if the provider is missing),
the fp16 graph for --precision fp16; inputs are copied from host memory on every call (sess.run).

--roofline adds what bounds the figures: the model's floating-point operations per pass (PyTorch's
FlopCounterMode: 2 per multiply-add of every matmul, linear and attention product; elementwise work not
counted), the fp32 matrix-multiply rate this machine reaches with --threads threads (best of 15
2048 x 2048 x 2048 torch.mm calls; on CPU the same MKL/oneDNN kernels PyTorch's linear layers use), and
each engine's achieved GFLOP/s as a fraction of it. An engine near that rate cannot be made much faster
without doing less arithmetic (fewer steps, smaller or lower-precision weights).

--ckpt benchmarks a trained checkpoint (any layout export_dit.py reads) instead of a random preset;
give its graph with --onnx (e.g. the Fashion-MNIST default model, 4x8x8 latents).

Examples (the numbers depend on the machine; run them on a quiet one):
    python models/bench_dit.py --batch 8 --threads 2 --iters 20 --roofline --json models/work/bench/cpu.json
    python models/bench_dit.py --ckpt models/fashion_mnist/checkpoints/dit_ema.pt \
        --onnx models/fashion_mnist/onnx/dit.onnx --batch 64 --threads 2 --iters 50 --roofline
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import export_dit
import numpy as np
import torch

from d3hr_models.dit import PRESETS
from d3hr_models.machine import machine_info
from d3hr_models.onnx_export import ort_session, read_metadata

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="S/2", help="DiT size (default S/2)")
    p.add_argument("--image-size", type=int, default=256, choices=(256, 512),
                   help="image size; latent side = image-size / 8 (default 256)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes of the random DiT (default 1000)")
    p.add_argument("--batch", type=int, default=8, help="batch size per forward pass (default 8)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both engines (default 2)")
    p.add_argument("--iters", type=int, default=20, help="timed forward passes per engine (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes before timing (default 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="fp32 (default) or fp16 (PyTorch .half() and the --fp16 ONNX graph; meant for cuda)")
    p.add_argument("--engines", default="onnxruntime,pytorch",
                   help="comma-separated subset of onnxruntime,pytorch (default both)")
    p.add_argument("--onnx", help="graph to benchmark (default models/work/bench/dit_<preset>_<size>[_fp16].onnx)")
    p.add_argument("--reexport", action="store_true", help="export the graph again even if --onnx exists")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    p.add_argument("--ckpt", help="a trained DiT checkpoint instead of a random --preset (needs --onnx)")
    p.add_argument("--roofline", action="store_true",
                   help="also count the model's FLOPs per pass and measure the machine's fp32 matmul rate")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args(argv)


def summarize(times: list[float], batch: int) -> dict:
    total = sum(times)
    return {"passes_per_s": len(times) / total, "images_per_s": len(times) * batch / total,
            "ms_per_pass_median": 1e3 * statistics.median(times), "ms_per_pass_min": 1e3 * min(times),
            "iters": len(times)}


def flops_per_pass(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> int:
    """Floating-point operations of one forward pass (2 per multiply-add), as PyTorch counts them."""
    from torch.utils.flop_counter import FlopCounterMode
    x, t, y = (torch.from_numpy(v) for v in inputs.values())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    return int(counter.get_total_flops())


def matmul_peak_gflops(n: int = 2048, reps: int = 15) -> float:
    """Best fp32 torch.mm rate (GFLOP/s) on n x n x n products with torch's current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def bench_ort(path: str, inputs: dict[str, np.ndarray], args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    sess = ort_session(path, args.threads, args.device)
    out = None
    for _ in range(args.warmup):
        out = sess.run(None, inputs)[0]
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        out = sess.run(None, inputs)[0]
        times.append(time.perf_counter() - t0)
    if out is None:
        out = sess.run(None, inputs)[0]
    res = summarize(times, args.batch)
    res["providers"] = sess.get_providers()
    return res, out


def bench_torch(model: torch.nn.Module, inputs: dict[str, np.ndarray], args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    dev = torch.device(args.device)
    model = model.to(dev)
    if args.precision == "fp16":
        model = model.half()
    x, t, y = (torch.from_numpy(v).to(dev) for v in inputs.values())
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    with torch.no_grad():
        out = None
        for _ in range(args.warmup):
            out = model(x, t, y)
        sync()
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            out = model(x, t, y)
            sync()
            times.append(time.perf_counter() - t0)
        if out is None:
            out = model(x, t, y)
    res = summarize(times, args.batch)
    res["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
    return res, out.float().cpu().numpy()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not set(engines) <= {"onnxruntime", "pytorch"} or not engines:
        raise SystemExit(f"--engines: unknown engine in {args.engines!r}")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if args.device == "cuda" and "pytorch" in engines and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (use --engines onnxruntime to bench ORT only)")
    fp16 = args.precision == "fp16"
    tag = args.preset.replace("/", "") + f"_{args.image_size}" + ("_fp16" if fp16 else "")
    path = args.onnx or os.path.join(HERE, "work", "bench", f"dit_{tag}.onnx")
    exp_args = ["--random", "--preset", args.preset, "--image-size", str(args.image_size),
                "--num-classes", str(args.num_classes), "--seed", str(args.seed), "--out", path,
                "--threads", str(args.threads)] + (["--fp16"] if fp16 else [])
    if args.ckpt:
        if not args.onnx:
            raise SystemExit("--ckpt needs --onnx (the graph exported from that checkpoint)")
        if not os.path.exists(path) or args.reexport:
            raise SystemExit(f"--ckpt: export {args.onnx} with models/export_dit.py first (its metadata needs the "
                             "VAE's scaling factor); this script exports only random presets")
        exp_args = ["--ckpt", args.ckpt, "--out", path, "--threads", str(args.threads)]
    if "onnxruntime" in engines and (args.reexport or not os.path.exists(path)):
        print(f"exporting {path}", flush=True)
        export_dit.main(exp_args)

    ns = export_dit.parse_args(exp_args)
    dit, _, desc = export_dit.load_model(ns)
    export_dit.set_time_embedding(dit, "official")
    model = export_dit.EpsGraph(dit).eval()
    cfg = dit.cfg
    c, h = cfg.in_channels, cfg.input_size
    rng = np.random.default_rng(args.seed)
    inputs = {"x": rng.standard_normal((args.batch, c, h, h)).astype(np.float32),
              "t": rng.integers(0, 1000, args.batch).astype(np.int64),
              "y": np.append(rng.integers(0, cfg.num_classes, args.batch - 1), cfg.null_class).astype(np.int64)}

    result = {
        "model": desc, "preset": args.preset, "image_size": args.image_size, "latent_shape": [c, h, h],
        "parameters": sum(p.numel() for p in dit.parameters()), "batch": args.batch, "threads": args.threads,
        "iters": args.iters, "warmup": args.warmup, "device": args.device, "precision": args.precision,
        "onnx": os.path.relpath(path), **machine_info(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "results": {},
    }
    if args.roofline:
        result["gflop_per_pass"] = flops_per_pass(model, inputs) / 1e9
        if args.device == "cpu":
            result["matmul_peak_gflops"] = matmul_peak_gflops()
        print(f"{result['gflop_per_pass']:.2f} GFLOP per pass (batch {args.batch})"
              + (f"; fp32 2048^3 torch.mm: {result['matmul_peak_gflops']:.1f} GFLOP/s on {args.threads} threads"
                 if "matmul_peak_gflops" in result else ""), flush=True)
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    outs = {}
    for engine in engines:
        print(f"{engine}: {args.warmup} warm-up + {args.iters} timed passes, batch {args.batch}, "
              f"{args.threads} threads, {args.device} {args.precision}", flush=True)
        if engine == "onnxruntime":
            import onnxruntime as ort
            result["versions"]["onnxruntime"] = ort.__version__
            result["onnx_metadata_model"] = read_metadata(path).get("model", "")
            res, outs[engine] = bench_ort(path, inputs, args)
        else:
            res, outs[engine] = bench_torch(model, inputs, args)
        result["results"][engine] = res
        line = (f"  {res['passes_per_s']:.3f} passes/s, {res['images_per_s']:.2f} images/s, "
                f"median {res['ms_per_pass_median']:.1f} ms/pass")
        if args.roofline:
            res["gflops"] = res["passes_per_s"] * result["gflop_per_pass"]
            line += f", {res['gflops']:.1f} GFLOP/s"
            if "matmul_peak_gflops" in result:
                res["fraction_of_matmul_peak"] = res["gflops"] / result["matmul_peak_gflops"]
                line += f" ({100 * res['fraction_of_matmul_peak']:.0f} % of the torch.mm rate)"
        print(line, flush=True)
    if len(outs) == 2:
        result["max_abs_diff"] = float(np.abs(outs["onnxruntime"] - outs["pytorch"]).max())
        r = result["results"]
        result["ort_over_torch"] = r["onnxruntime"]["passes_per_s"] / r["pytorch"]["passes_per_s"]
        print(f"onnxruntime / pytorch throughput: {result['ort_over_torch']:.2f}x; "
              f"max abs diff of the outputs {result['max_abs_diff']:.2e}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
