#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the job-array test (tests/slurm.rs).
#
#   scripts/slurm.sh install        # Debian's slurmctld, slurmd, slurm-client, munge (root)
#   scripts/slurm.sh start DIR      # config, state and logs in DIR; prints SLURM_CONF=...
#   scripts/slurm.sh stop DIR
#
# Works as root without systemd: apt does not start the daemons here, so this starts
# munged as the munge user and slurmctld/slurmd in the foreground (-D) in the background.
# One node, named after `hostname -s`, with this machine's CPUs; no cgroups.
set -euo pipefail

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "scripts/slurm.sh: $1 needs root" >&2
        exit 1
    fi
}

case "${1:-}" in
install)
    need_root install
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        exit 0
    fi
    echo "== installing Slurm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null; }
    ;;
start)
    need_root start
    DIR=$(realpath -m "${2:?usage: scripts/slurm.sh start DIR}")
    mkdir -p "$DIR"/{state,spool,log}
    chown -R slurm:slurm "$DIR/state" "$DIR/log"
    host=$(hostname -s)
    # Ports below the kernel's ephemeral range (32768-60999 here), so that no outgoing
    # connection of the tests, open or in TIME_WAIT, holds one; and not in use now.
    free_port() {
        local p
        while :; do
            p=$(( $1 + RANDOM % 5000 ))
            ss -Htan "( sport = :$p )" 2>/dev/null | grep -q . || { echo "$p"; return; }
        done
    }
    ctld_port=$(free_port 10000)
    slurmd_port=$(free_port 20000)
    cpus=$(nproc)
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=kiln-test
SlurmctldHost=$host
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmUser=slurm
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
KillWait=5
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    export SLURM_CONF="$DIR/slurm.conf"
    # Daemons an earlier run left behind hold this node and make the new cluster's jobs
    # wait forever: a test killed by a timeout or a signal never runs its cleanup. Stop
    # every slurmctld/slurmd started by this script for a test cluster (its config names
    # ClusterName=kiln-test, or is gone with its temporary directory).
    for pid in $(pgrep -f '^/usr/sbin/slurm(ctld|d) -D -f ' || true); do
        conf=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 4p) || continue
        if [[ -n $conf && ( ! -e $conf ) ]] || grep -qsx 'ClusterName=kiln-test' "$conf"; then
            echo "scripts/slurm.sh: stopping a test daemon left by an earlier run (pid $pid, $conf)" >&2
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        # Debian's package makes one on install; a machine without it gets one here.
        install -d -o munge -g munge -m 0700 /etc/munge
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            head -c 1024 /dev/urandom >/etc/munge/munge.key
            chown munge:munge /etc/munge/munge.key
            chmod 0400 /etc/munge/munge.key
        fi
    fi
    # munged may already serve this machine (one per machine; the socket says so).
    if ! munge -n </dev/null >/dev/null 2>&1; then
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged
        for _ in $(seq 1 50); do
            munge -n </dev/null >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    /usr/sbin/slurmctld -D -f "$SLURM_CONF" >"$DIR/log/slurmctld.out" 2>&1 &
    echo $! >"$DIR/slurmctld.run"
    /usr/sbin/slurmd -D -f "$SLURM_CONF" >"$DIR/log/slurmd.out" 2>&1 &
    echo $! >"$DIR/slurmd.run"
    for _ in $(seq 1 200); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "SLURM_CONF=$SLURM_CONF"
            exit 0
        fi
        sleep 0.1
    done
    echo "scripts/slurm.sh: the node did not come up; logs in $DIR/log:" >&2
    tail -n 20 "$DIR"/log/* >&2 || true
    exit 1
    ;;
stop)
    DIR=$(realpath -m "${2:?usage: scripts/slurm.sh stop DIR}")
    for d in slurmd slurmctld; do
        if [[ -f "$DIR/$d.run" ]]; then
            kill "$(cat "$DIR/$d.run")" 2>/dev/null || true
        fi
    done
    ;;
*)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
