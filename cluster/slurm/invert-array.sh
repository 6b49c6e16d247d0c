#!/usr/bin/env bash
# One task of a Slurm job array that inverts a shard of the data: `d3hr-cli invert --resume` on
# this task's block of classes (`--classes auto`, the default) or its images (`--shard auto`),
# writing OUT/shard-<i>-of-<n>.safetensors (i: the task's place in the array, from 0). A requeued task continues from its last
# finished class. Then merge-sample.sh, as a job that depends on the array (afterok).
#
#   jid=$(sbatch --parsable --array=0-15 cluster/slurm/invert-array.sh OUT [invert options…])
#   sbatch --dependency=afterok:$jid --kill-on-invalid-dep=yes cluster/slurm/merge-sample.sh OUT [sample options…]
#
# [invert options…] go to `d3hr-cli invert` as they are: the data and model flags, the seed,
# the profile (e.g. --data train/ --class-map map.txt --onnx dit.onnx --vae-encoder enc.onnx
# --ep cuda --seed 0). Give every task the same options and a fixed --seed.
#
# Environment:
#   D3HR_CLI    the d3hr-cli binary (default: d3hr-cli on PATH)
#   D3HR_SPLIT  `class` (default: each task a block of classes) or `image` (each task every n-th
#               image of every class)
#
# The #SBATCH lines are defaults; sbatch options on the command line override them.
#SBATCH --job-name=d3hr-invert
#SBATCH --cpus-per-task=1
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=d3hr-invert-%A_%a.out
set -euo pipefail

out=${1:?usage: sbatch --array=0-N invert-array.sh OUT_DIR [d3hr-cli invert options...]}
shift
cli=${D3HR_CLI:-d3hr-cli}
task=${SLURM_ARRAY_TASK_ID:?invert-array.sh runs as a task of a Slurm job array (sbatch --array=...)}
# The shard index and count, as `d3hr-cli … auto` reads them (it checks them too): the task's
# place in the array's range, or, with D3HR_SHARD_COUNT, the task id itself.
if [[ -n ${D3HR_SHARD_COUNT:-} ]]; then
    index=$task count=$D3HR_SHARD_COUNT
else
    index=$(((task - ${SLURM_ARRAY_TASK_MIN:-0}) / ${SLURM_ARRAY_TASK_STEP:-1}))
    count=${SLURM_ARRAY_TASK_COUNT:?SLURM_ARRAY_TASK_COUNT is not set (Slurm < 21.08): set D3HR_SHARD_COUNT}
fi
case ${D3HR_SPLIT:-class} in
class) part=(--classes auto) ;;
image) part=(--shard auto) ;;
*)
    echo "d3hr: D3HR_SPLIT=${D3HR_SPLIT}: expected class or image" >&2
    exit 2
    ;;
esac

mkdir -p "$out"
shard=$out/shard-$index-of-$count.safetensors
echo "d3hr: array task $task, shard $index of $count (job ${SLURM_ARRAY_JOB_ID}_$task, start $((${SLURM_RESTART_COUNT:-0} + 1))) on $(hostname -s), split by ${D3HR_SPLIT:-class} -> $shard"
# --threads: the CPUs Slurm gave this task, not the whole node.
set +e
"$cli" --threads "${SLURM_CPUS_PER_TASK:-1}" --json invert "${part[@]}" --resume --out "$shard" "$@"
rc=$?
set -e
if ((rc != 0)); then
    echo "d3hr: FAILED: array task $task, shard $index of $count (job ${SLURM_ARRAY_JOB_ID}_$task, split by ${D3HR_SPLIT:-class}) exited with $rc; see the error above. Fix it and requeue the task (scontrol requeue ${SLURM_ARRAY_JOB_ID}_$task); --resume keeps its finished classes." >&2
    exit "$rc"
fi
echo "d3hr: array task $task, shard $index of $count done: $shard"
