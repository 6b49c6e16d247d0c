#!/usr/bin/env bash
# End-to-end test of the Slurm job scripts on a real (single-node) Slurm cluster, brought up by
# local-cluster.sh. Run by .ci/run; as root on a Debian machine (it installs slurmctld, slurmd,
# slurm-client, munge and dataset-fashion-mnist when they are missing).
#
#   1. A 4-task array inverts the embedded model's Fashion-MNIST subset (20 images per class) by
#      class with --resume; a dependent job (afterok) merges and samples. Task 1 is requeued
#      (`scontrol requeue`) after its first class: it must keep its finished classes and go on.
#      The merged statistics and every image must be byte-identical to a single `d3hr-cli`
#      process's `invert` + `sample` on the same data.
#   2. A 2-task array by image (--shard auto) and a merge-only dependent job give the bytes of
#      the same two shards inverted and merged by one process.
#   3. An array over data with one bad class (id 10, which the DiT does not know) fails in the
#      task that holds it; the dependent job must never run, and the failed task's log must name
#      its shard.
#
# Environment: D3HR_CLI (the binary; default: `cargo build -p d3hr-cli` in this checkout),
# D3HR_PYTHON (Python with onnxruntime; default: scripts/python-env), D3HR_SLURM_DIR (the
# cluster's folder), D3HR_TEST_DIR (work folder, default: a new temporary folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/cluster/slurm
cluster=$here/local-cluster.sh
t_start=$SECONDS

say() { printf '\n[slurm-e2e %3ds] %s\n' "$((SECONDS - t_start))" "$*"; }
skip() {
    printf '\n%s\n' "################################################################################" >&2
    printf '### SKIPPED: the Slurm end-to-end test did NOT run: %s\n' "$*" >&2
    printf '%s\n\n' "################################################################################" >&2
    exit 0
}
fail() {
    printf '\n[slurm-e2e] FAILED: %s\n' "$*" >&2
    if [[ -n ${SLURM_CONF:-} ]]; then
        squeue -t all -l >&2 || true
    fi
    for f in "${work:-/nonexistent}"/logs/*.out; do
        [[ -f $f ]] || continue
        printf '\n----- %s -----\n' "$f" >&2
        grep -v '"event":"progress"' "$f" | tail -n 30 >&2
    done
    "$cluster" logs || true
    exit 1
}

# --- Packages: install what is missing; skip only when they cannot be installed. ------------
need_pkgs=()
for c in slurmctld slurmd sbatch munged; do command -v "$c" >/dev/null || need_pkgs+=("$c"); done
fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
[[ -f $fmnist ]] || need_pkgs+=(dataset-fashion-mnist)
if ((${#need_pkgs[@]})); then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        skip "missing ${need_pkgs[*]}, and this is not root on a Debian/Ubuntu machine (apt-get)"
    fi
    say "installing slurmctld slurmd slurm-client munge dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    if ! { timeout 300 apt-get update -qq &&
        timeout 600 apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge dataset-fashion-mnist >/dev/null; }; then
        skip "apt-get could not install slurmctld slurmd slurm-client munge dataset-fashion-mnist"
    fi
fi
[[ $(id -u) == 0 ]] || skip "the local cluster runs its daemons and jobs as root; this is uid $(id -u)"

# --- The binary and ONNX Runtime. -------------------------------------------------------------
if [[ -z ${D3HR_CLI:-} ]]; then
    (cd "$root" && cargo build -q -p d3hr-cli)
    D3HR_CLI=${CARGO_TARGET_DIR:-$root/target}/debug/d3hr-cli
fi
[[ -x $D3HR_CLI ]] || fail "no d3hr-cli at $D3HR_CLI"
D3HR_CLI=$(realpath "$D3HR_CLI")
export D3HR_CLI
export D3HR_PYTHON=${D3HR_PYTHON:-$("$root/scripts/python-env")}
work=${D3HR_TEST_DIR:-$(mktemp -d /tmp/d3hr-slurm-e2e.XXXXXX)}
mkdir -p "$work/logs"

# --- The cluster: down on every exit. ---------------------------------------------------------
"$cluster" down >/dev/null 2>&1 || true
trap '"$cluster" down >/dev/null 2>&1 || true' EXIT
"$cluster" up || fail "the local cluster did not come up"
eval "$("$cluster" env)"
export SLURM_CONF

# State of every task of a job (array): lines `<id> <STATE> <reason>`.
states() { squeue -h -t all -j "$1" -o '%i %T %r' 2>/dev/null || true; }
# Wait until no task of job $1 is pending or running; at most $2 seconds.
wait_done() {
    local t0=$SECONDS s
    while ((SECONDS - t0 < $2)); do
        s=$(states "$1")
        if [[ -n $s ]] && ! grep -Eq ' (PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESIZING|SUSPENDED|SIGNALING|STAGE_OUT)( |$)' <<<"$s"; then
            return 0
        fi
        sleep 1
    done
    fail "job $1 not finished after $2 s: $(states "$1" | tr '\n' ';')"
}
# JobState of one job (array task as <job>_<task>).
state_of() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }

limit=20
inv_args=(--limit-per-class "$limit" --seed 7)
smp_args=(--ipc 3 --m 2000 --seed 3)

# === 1. Array by class + requeue + dependent merge/sample = one process, byte for byte. =======
say "reference: one process inverts and samples ($limit images per class, 10 classes)"
"$D3HR_CLI" --quiet --threads 2 invert "${inv_args[@]}" --out "$work/ref/stats.safetensors" ||
    fail "reference invert"
"$D3HR_CLI" --quiet --threads 2 sample --stats "$work/ref/stats.safetensors" "${smp_args[@]}" \
    --out "$work/ref/distilled" || fail "reference sample"

say "submitting a 4-task array (by class) and its dependent merge + sample"
out=$work/array
jid=$(sbatch --parsable --array=0-3 --output="$work/logs/invert-%A_%a.out" \
    "$here/invert-array.sh" "$out" "${inv_args[@]}") || fail "sbatch of the array"
mid=$(sbatch --parsable --dependency="afterok:$jid" --kill-on-invalid-dep=yes \
    --output="$work/logs/merge-sample-%j.out" \
    "$here/merge-sample.sh" "$out" "${smp_args[@]}") || fail "sbatch of the merge job"
say "array job $jid, merge job $mid"

# Requeue task 1 (classes 2..5) once its first class is checkpointed.
partial=$out/.shard-1-of-4.safetensors.d3hr-partial
t0=$SECONDS
until compgen -G "$partial/class-*.safetensors" >/dev/null; do
    ((SECONDS - t0 < 180)) || fail "task 1 wrote no class checkpoint within 180 s"
    [[ $(state_of "${jid}_1") =~ ^(PENDING|RUNNING|CONFIGURING)$ ]] ||
        fail "task 1 ended ($(state_of "${jid}_1")) before it could be requeued"
    sleep 0.1
done
kept_before=$(cd "$partial" && ls class-*.safetensors | sed 's/class-\(.*\)\.safetensors/\1/' | sort)
scontrol requeue "${jid}_1" || fail "scontrol requeue ${jid}_1"
say "requeued task 1 after class(es) $(echo $kept_before) of 2..5"

wait_done "$jid" 420
wait_done "$mid" 240
for t in 0 1 2 3; do
    s=$(state_of "${jid}_$t")
    [[ $s == COMPLETED ]] || fail "array task $t ended $s"
done
[[ $(state_of "$mid") == COMPLETED ]] || fail "merge job ended $(state_of "$mid")"

log1=$work/logs/invert-${jid}_1.out
grep -q 'start 2)' "$log1" || fail "task 1 did not run a second time (log: $log1)"
for c in $kept_before; do
    grep -q "class $c: kept from the checkpoint (--resume)" "$log1" ||
        fail "the requeued task 1 did not keep class $c from its checkpoint"
done
say "task 1 ran twice and kept class(es) $(echo $kept_before) from its checkpoints"

cmp "$work/ref/stats.safetensors" "$out/stats.safetensors" ||
    fail "merged statistics differ from the one-process run"
diff -r -x manifest.json "$work/ref/distilled" "$out/distilled" ||
    fail "distilled images differ from the one-process run"
n=$(find "$out/distilled" -name '*.png' | wc -l)
((n == 30)) || fail "expected 30 images (10 classes x IPC 3), found $n"
say "identical, byte for byte: merged statistics and all $n images equal the one-process run"

# === 2. By image: a 2-task array and a merge-only dependent job = the same shards made and
# merged by one process, byte for byte (image shards equal the whole only to rounding). =====
say "a 2-task array by image (4 images per class) and a merge-only dependent job"
small=(--limit-per-class 4 --seed 7)
out3=$work/array-image
jid3=$(D3HR_SPLIT=image sbatch --parsable --array=0-1 --output="$work/logs/image-invert-%A_%a.out" \
    "$here/invert-array.sh" "$out3" "${small[@]}") || fail "sbatch of the image array"
mid3=$(sbatch --parsable --dependency="afterok:$jid3" --kill-on-invalid-dep=yes \
    --output="$work/logs/image-merge-%j.out" "$here/merge-sample.sh" "$out3") ||
    fail "sbatch of the image merge job"
for i in 0 1; do
    "$D3HR_CLI" --quiet --threads 1 invert --shard "$i/2" "${small[@]}" \
        --out "$work/ref-image/shard-$i-of-2.safetensors" || fail "reference image shard $i"
done
"$D3HR_CLI" --quiet merge --out "$work/ref-image/stats.safetensors" \
    "$work/ref-image/shard-0-of-2.safetensors" "$work/ref-image/shard-1-of-2.safetensors" ||
    fail "reference merge"
wait_done "$jid3" 240
wait_done "$mid3" 120
[[ $(state_of "$mid3") == COMPLETED ]] || fail "image merge job ended $(state_of "$mid3")"
grep -q 'image shard 1/2 (Slurm array task 1 of 0-1:1)' "$work/logs/image-invert-${jid3}_1.out" ||
    fail "task 1 of the image array did not take image shard 1/2"
cmp "$work/ref-image/stats.safetensors" "$out3/stats.safetensors" ||
    fail "image shards merged under Slurm differ from the same shards merged by one process"
say "identical, byte for byte: image shards merged under Slurm and by one process"

# === 3. A bad shard: its task fails, names the shard, and the dependent job never runs. =====
say "an array over data with a bad class (id 10, unknown to the DiT)"
bad=$work/bad
mkdir -p "$bad"
python3 - "$fmnist" "$bad" <<'EOF' || fail "could not write the bad dataset"
# Two images of each Fashion-MNIST class and two labelled 10, which the 10-class DiT refuses.
import gzip, sys
src, dst = sys.argv[1], sys.argv[2]
img = gzip.open(src).read()
lab = gzip.open(src.replace("images-idx3", "labels-idx1")).read()
keep, seen = [], {}
for i, l in enumerate(lab[8:]):
    if seen.get(l, 0) < 2:
        seen[l] = seen.get(l, 0) + 1
        keep.append((i, l))
keep += [(keep[0][0], 10), (keep[1][0], 10)]
n = len(keep)
head = lambda magic, *dims: b"".join(v.to_bytes(4, "big") for v in (magic, n) + dims)
with gzip.open(f"{dst}/train-images-idx3-ubyte.gz", "wb") as f:
    f.write(head(0x803, 28, 28) + b"".join(img[16 + i * 784 : 16 + (i + 1) * 784] for i, _ in keep))
with open(f"{dst}/train-labels-idx1-ubyte", "wb") as f:
    f.write(head(0x801) + bytes(l for _, l in keep))
EOF
out2=$work/array-bad
jid2=$(sbatch --parsable --array=0-3 --output="$work/logs/bad-invert-%A_%a.out" \
    "$here/invert-array.sh" "$out2" --data "$bad/train-images-idx3-ubyte.gz" --seed 7) ||
    fail "sbatch of the bad array"
mid2=$(sbatch --parsable --dependency="afterok:$jid2" --kill-on-invalid-dep=yes \
    --output="$work/logs/bad-merge-sample-%j.out" \
    "$here/merge-sample.sh" "$out2" "${smp_args[@]}") || fail "sbatch of the bad merge job"
wait_done "$jid2" 240
wait_done "$mid2" 60
for t in 0 1 2; do
    [[ $(state_of "${jid2}_$t") == COMPLETED ]] || fail "bad array: task $t ended $(state_of "${jid2}_$t")"
done
[[ $(state_of "${jid2}_3") == FAILED ]] || fail "bad array: task 3 ended $(state_of "${jid2}_3"), not FAILED"
info=$(scontrol show job "$mid2")
grep -q 'JobState=CANCELLED' <<<"$info" && grep -q 'Reason=DependencyNeverSatisfied' <<<"$info" ||
    fail "the dependent job was not cancelled for its dependency: $(grep -o 'JobState=[^ ]* Reason=[^ ]*' <<<"$info")"
[[ ! -e $work/logs/bad-merge-sample-$mid2.out && ! -e $out2/stats.safetensors ]] ||
    fail "the dependent job ran"
log3=$work/logs/bad-invert-${jid2}_3.out
grep -q 'class shard 3/4 (Slurm array task 3 of 0-3:1): classes 8..11: class `10` has id 10' "$log3" ||
    fail "task 3's error does not name its shard and the bad class (log: $log3)"
grep -q "FAILED: array task 3, shard 3 of 4 (job ${jid2}_3" "$log3" || fail "task 3's log has no FAILED line"
say "task 3 failed naming its shard; merge job $mid2 cancelled (DependencyNeverSatisfied), never ran:"
grep -h 'FAILED\|"event":"error"' "$log3" | sed 's/^/    /'

[[ -n ${D3HR_TEST_DIR:-} ]] || rm -rf "$work"
say "PASSED in $((SECONDS - t_start)) s"
