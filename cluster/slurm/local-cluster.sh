#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages: munged, slurmctld and slurmd
# on 127.0.0.1, every CPU of the machine, no cgroups, no accounting. For testing the job scripts
# in this folder (test-e2e.sh); not a production setup.
#
# Usage: cluster/slurm/local-cluster.sh install|up|down|status|env
#   install  apt-get install the packages (slurmctld, slurmd, slurm-client, munge)
#   up       write the configuration and start the daemons; wait until the node is idle
#   down     cancel every job, stop the daemons this script started, remove the state folder
#   status   sinfo and squeue
#   logs     the last lines of each daemon's log
#   env      print `export SLURM_CONF=…` (eval "$(local-cluster.sh env)" to use sbatch & co.)
#
# Everything lives in D3HR_SLURM_DIR (default /tmp/d3hr-slurm): configuration, munge key and
# socket, state, spool, logs. Nothing in /etc is touched. The daemons run as root (the cluster
# is for the machine's root user). Ports: D3HR_SLURM_PORT (slurmctld, default 16817) and the next
# one (slurmd). D3HR_SLURM_KEEP=1 keeps the folder (logs) on `down`.
set -euo pipefail

dir=${D3HR_SLURM_DIR:-/tmp/d3hr-slurm}
port=${D3HR_SLURM_PORT:-16817}
host=$(hostname -s)
conf=$dir/etc/slurm.conf
up_timeout=${D3HR_SLURM_UP_TIMEOUT:-60}

say() { printf 'local-cluster: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    logs
    exit 1
}

logs() {
    local f
    for f in "$dir"/log/*.log; do
        [[ -f $f ]] || continue
        printf '\n----- %s (last 40 lines) -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

install() {
    local need=()
    command -v slurmctld >/dev/null || need+=(slurmctld)
    command -v slurmd >/dev/null || need+=(slurmd)
    command -v sbatch >/dev/null || need+=(slurm-client)
    command -v munged >/dev/null || need+=(munge)
    if ((${#need[@]} == 0)); then
        return 0
    fi
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# The daemons' pid, if one is running under this folder.
pid_of() {
    local f=$dir/run/$1.pid p
    [[ -f $f ]] || return 1
    p=$(cat "$f")
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "$p"
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    # A modest RealMemory: half of what is free now, at most 4 GiB, so the node is never
    # drained for reporting less memory than configured.
    mem=$(awk '/MemAvailable/ { m = int($2 / 2048); print (m > 4096 ? 4096 : m) }' /proc/meminfo)
    mkdir -p "$dir"/{etc,munge,run,log,state,spool}
    chmod 700 "$dir/munge"
    cat >"$conf" <<EOF
# Written by cluster/slurm/local-cluster.sh: one node, $host, on 127.0.0.1.
ClusterName=d3hr-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged socket; cred_expire also sets how long a requeued job waits (default 120 s).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: processes tracked through /proc, no task binding, no accounting daemon.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
# Without accounting, scontrol is the only record of a job: keep finished jobs for 30 min.
MinJobAge=1800
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # Nothing in the configuration uses cgroups; say so for the Slurm versions that look anyway.
    printf 'CgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n' >"$dir/etc/cgroup.conf"
    if [[ ! -f $dir/munge/munge.key ]]; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$dir/munge/munge.key"
}

up() {
    for d in slurmctld slurmd munged sinfo sbatch; do
        command -v "$d" >/dev/null || die "$d not found: run \`$0 install\` (Debian: slurmctld slurmd slurm-client munge)"
    done
    if pid_of slurmctld >/dev/null; then
        say "already up ($dir)"
        return 0
    fi
    write_conf
    export SLURM_CONF=$conf
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munge.seed" ||
        die "munged did not start"
    # -c: start clean (no jobs from an earlier cluster in this folder).
    slurmctld -c -f "$conf" || die "slurmctld did not start"
    slurmd -f "$conf" -N "$host" || die "slurmd did not start"
    local t0=$SECONDS state=""
    while ((SECONDS - t0 < up_timeout)); do
        state=$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null || true)
        if [[ $state == idle ]]; then
            say "up: node $host idle, $(nproc) CPUs ($dir)"
            return 0
        fi
        sleep 0.5
    done
    sinfo -N -l >&2 || true
    scontrol show node "$host" >&2 || true
    die "the node did not become idle within ${up_timeout} s (state: '${state:-none}')"
}

down() {
    export SLURM_CONF=$conf
    local p pids=()
    if pid_of slurmctld >/dev/null; then
        squeue -h -o %A | sort -u | xargs -r scancel --quiet 2>/dev/null || true
    fi
    for d in slurmd slurmctld munged; do
        if p=$(pid_of "$d"); then
            kill "$p" && pids+=("$p")
        fi
    done
    local t0=$SECONDS
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null; do
            if ((SECONDS - t0 > 20)); then
                say "pid $p still running after 20 s: killing it"
                kill -9 "$p" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    done
    if [[ ${D3HR_SLURM_KEEP:-0} == 1 ]]; then
        say "down (kept $dir)"
    else
        rm -rf "$dir"
        say "down"
    fi
}

case ${1:-} in
install) install ;;
up) up ;;
down) down ;;
status)
    export SLURM_CONF=$conf
    sinfo -N -l
    squeue -l
    ;;
env) echo "export SLURM_CONF=$conf" ;;
logs) logs ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
