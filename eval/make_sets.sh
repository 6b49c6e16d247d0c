#!/usr/bin/env bash
# Writes every distilled set of the README's accuracy table under runs/ (resumable: a set whose
# manifest.json exists is kept). One full DDIM inversion of the 60,000 training images (~30 min on
# the 2-core machine) and one DDPM forward mapping (VAE only) feed all the sampled sets.
#   eval/make_sets.sh            # then: python -m d3hr_eval.run_table; python -m d3hr_eval.make_table
# After swapping in another model, move runs/ away first: every statistics file records the SHA-256
# of the DiT it was made with, and this script stops if one under runs/ names another DiT.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${D3HR_CLI:-target/release/d3hr-cli}
[ -x "$CLI" ] || cargo build --release -p d3hr-cli
PY=${PYTHON:-python3}
mkdir -p runs

# Statistics made with another DiT make every set under runs/ stale (and `d3hr-cli sample` refuses them).
DIT_SHA=$(sha256sum models/fashion_mnist/onnx/dit.onnx | cut -c1-12)
for f in runs/full_distill/stats.safetensors runs/stats_*.safetensors; do
  [ -f "$f" ] || continue
  if ! "$CLI" inspect "$f" | grep -q "sha256 $DIT_SHA"; then
    echo "$f was made with another DiT than models/fashion_mnist/onnx/dit.onnx (sha256 $DIT_SHA...):" >&2
    echo "move runs/ away (e.g. mv runs runs_old) and run this script again" >&2
    exit 1
  fi
done

# The full run (inversion of all 60,000 images + sampling at IPC 10, timed for the README); its
# statistics feed every DDIM-mapped set below.
[ -f runs/full_distill/manifest.json ] || "$CLI" distill --ipc 10 --seed 0 --out runs/full_distill --force
STATS=runs/full_distill/stats.safetensors
[ -f runs/stats_ddpm.safetensors ] || "$CLI" invert --mapping ddpm --seed 0 --out runs/stats_ddpm.safetensors --force

sample() { # name, then sample flags
  local name=$1; shift
  [ -f "runs/$name/manifest.json" ] || "$CLI" sample --seed 0 --quiet --force --out "runs/$name" "$@"
}
for IPC in 1 10 50; do
  sample d3hr_joint_ipc$IPC --stats $STATS --ipc $IPC --mode joint
  sample d3hr_perdim_ipc$IPC --stats $STATS --ipc $IPC --mode per-dim
  sample base_rs_ipc$IPC --stats $STATS --ipc $IPC --mode random
  sample base_ddpm_ipc$IPC --stats runs/stats_ddpm.safetensors --ipc $IPC --mode random
  [ -d runs/random_real_ipc$IPC ] || $PY -m d3hr_eval.random_real --ipc $IPC --seed 0 --out runs/random_real_ipc$IPC
done
for M in 100 1000 10000; do
  sample d3hr_joint_m${M}_ipc10 --stats $STATS --ipc 10 --mode joint --m $M
done

# Guidance experiments (README): guidance w in inversion and sampling, statistics of 300 images per
# class (twice the model calls of guidance 1, so a smaller sample fit the session; ~3 min each).
for W in 2 4 6 8; do
  [ -f runs/stats_w${W}_300.safetensors ] || "$CLI" invert --limit-per-class 300 --guidance $W --seed 0 --out runs/stats_w${W}_300.safetensors --force
done
sample d3hr_joint_w2_300_ipc10 --stats runs/stats_w2_300.safetensors --ipc 10 --mode joint
sample base_rs_w4_300_ipc10 --stats runs/stats_w4_300.safetensors --ipc 10 --mode random
for IPC in 1 10; do
  for W in 4 6 8; do
    sample d3hr_joint_w${W}_300_ipc$IPC --stats runs/stats_w${W}_300.safetensors --ipc $IPC --mode joint
    sample d3hr_perdim_w${W}_300_ipc$IPC --stats runs/stats_w${W}_300.safetensors --ipc $IPC --mode per-dim
  done
done
# IPC 50 with the best hard-label settings of IPC 10 (per-dim w = 4, joint w = 6)
sample d3hr_perdim_w4_300_ipc50 --stats runs/stats_w4_300.safetensors --ipc 50 --mode per-dim
sample d3hr_joint_w6_300_ipc50 --stats runs/stats_w6_300.safetensors --ipc 50 --mode joint
# IPC 50 with the best soft-label setting of IPC 10 (per-dim w = 8; README, "Longer students")
sample d3hr_perdim_w8_300_ipc50 --stats runs/stats_w8_300.safetensors --ipc 50 --mode per-dim
