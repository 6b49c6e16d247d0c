#!/usr/bin/env bash
# The job after an invert-array.sh array: merge its shard files into OUT/stats.safetensors and
# sample the distilled images into OUT/distilled/. Submit it with --dependency=afterok:<array
# job id>, so that it runs only when every task of the array succeeded:
#
#   sbatch --dependency=afterok:$jid --kill-on-invalid-dep=yes cluster/slurm/merge-sample.sh OUT [sample options…]
#
# [sample options…] go to `d3hr-cli sample` as they are: the model flags (the same DiT as the
# inversion, and the VAE decoder), --ipc, --seed, --m, … (e.g. --onnx dit.onnx --vae-decoder
# dec.onnx --ipc 10 --seed 0). Without --ipc, only the merge is done.
#
# The shard files must be one complete set, shard-<i>-of-<n>.safetensors for one n and every
# task i of the array; anything else is refused (a stale file of another array, a missing task).
#
# Environment:
#   D3HR_CLI    the d3hr-cli binary (default: d3hr-cli on PATH)
#
#SBATCH --job-name=d3hr-merge-sample
#SBATCH --cpus-per-task=1
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=d3hr-merge-sample-%j.out
set -euo pipefail

out=${1:?usage: sbatch --dependency=afterok:JOBID merge-sample.sh OUT_DIR [d3hr-cli sample options...]}
shift
cli=${D3HR_CLI:-d3hr-cli}

shopt -s nullglob
shards=("$out"/shard-*-of-*.safetensors)
if ((${#shards[@]} == 0)); then
    echo "d3hr: no shard files (shard-<i>-of-<n>.safetensors) in $out" >&2
    exit 1
fi
counts=$(printf '%s\n' "${shards[@]}" | sed 's/.*-of-\([0-9]*\)\.safetensors$/\1/' | sort -u)
if [[ $(wc -l <<<"$counts") != 1 ]]; then
    echo "d3hr: shard files of arrays of different sizes in $out (of-$(echo $counts | tr ' ' ',')): remove the stale ones" >&2
    exit 1
fi
missing=()
for ((i = 0; i < counts; i++)); do
    [[ -f $out/shard-$i-of-$counts.safetensors ]] || missing+=("$i")
done
if ((${#missing[@]} || ${#shards[@]} != counts)); then
    echo "d3hr: $out has ${#shards[@]} files for $counts shards (missing shards: ${missing[*]:-none})" >&2
    exit 1
fi

echo "d3hr: merging ${#shards[@]} shards into $out/stats.safetensors"
"$cli" merge --force --out "$out/stats.safetensors" "${shards[@]}"
"$cli" inspect "$out/stats.safetensors"

ipc=0
for a in "$@"; do [[ $a == --ipc || $a == --ipc=* ]] && ipc=1; done
if ((ipc)); then
    echo "d3hr: sampling into $out/distilled"
    "$cli" --threads "${SLURM_CPUS_PER_TASK:-1}" --json sample --stats "$out/stats.safetensors" \
        --resume --out "$out/distilled" "$@"
fi
echo "d3hr: merge-sample done: $out"
