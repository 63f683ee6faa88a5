#!/usr/bin/env bash
# slurm-local.sh: a real one-node Slurm 22.05 cluster on 127.0.0.1, for tests and local trials.
#
#   tests/slurm/slurm-local.sh install   # apt packages, once per machine (tests/slurm/install.sh)
#   tests/slurm/slurm-local.sh start     # munged, mariadbd, slurmdbd, slurmctld, slurmd; waits for an idle node
#   tests/slurm/slurm-local.sh stop      # cancels leftover jobs, stops exactly the daemons it started (pid files)
#   tests/slurm/slurm-local.sh status
#   tests/slurm/slurm-local.sh env       # prints 'export SLURM_CONF=...' for clients (eval "$(... env)")
#
# Everything (configs, munge key, MariaDB datadir, spool, logs, pid files) lives in
# $SLURM_LOCAL_ROOT. Clients find the cluster through SLURM_CONF, so nothing is
# written under /etc unless SLURM_LOCAL_LINK_ETC=1 (needed only by the official
# snakemake-executor-plugin-slurm, whose job step drops SLURM_CONF).
# Needs root (every daemon runs as root) and no systemd. See docs/slurm-recipe.md.
#
# Environment knobs:
#   SLURM_LOCAL_ROOT       state folder (default .slurm-local; made absolute). Unix socket
#                          paths must stay under 108 bytes: keep it short.
#   SLURM_LOCAL_PORT_BASE  slurmctld port; slurmd, slurmdbd, mariadb use +1, +2, +3 (default 6817,
#                          with mariadb on 3306 in that case)
#   SLURM_LOCAL_CPUS       CPUs the node advertises (default nproc; may exceed it)
#   SLURM_LOCAL_MEM_MB     RealMemory (default: what slurmd -C reports)
#   SLURM_LOCAL_GPUS       fake GPUs through GRES (default 2; 0 disables)
#   SLURM_LOCAL_GRACE_S    GraceTime of the preemptable partition 'debug' (default 20)
#   SLURM_LOCAL_LINK_ETC   1 = symlink /etc/slurm/slurm.conf to our slurm.conf (default 0)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(realpath -m -- "${SLURM_LOCAL_ROOT:-.slurm-local}")
BASE=${SLURM_LOCAL_PORT_BASE:-6817}
CTLD_PORT=$BASE SLURMD_PORT=$((BASE + 1)) DBD_PORT=$((BASE + 2))
if [[ -z ${SLURM_LOCAL_PORT_BASE:-} ]]; then MYSQL_PORT=3306; else MYSQL_PORT=$((BASE + 3)); fi
NGPUS=${SLURM_LOCAL_GPUS:-2}
ETC=$ROOT/etc
SOCK=$ROOT/munge/munge.socket.2
export SLURM_CONF=$ETC/slurm.conf

log() { printf '[slurm-local %s] %s\n' "$(date +%T)" "$*" >&2; }

# wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS >= end )); then log "timeout waiting for $what"; return 1; fi
        sleep 0.2
    done
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_configs() {
    mkdir -p "$ETC" "$ROOT"/{log,run,spool/ctld,spool/d,munge,mysql}
    chmod 755 "$ROOT/munge"   # munged insists: socket dir a+x, not group/world-writable
    local cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
    local mem=${SLURM_LOCAL_MEM_MB:-$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')}
    local gres_types="" node_gres=""
    if (( NGPUS > 0 )); then
        # slurmd wants File= to be a character device; a symlink to /dev/null is one
        # and needs no mknod. The trailing number becomes the CUDA_VISIBLE_DEVICES index.
        mkdir -p "$ROOT/dev"
        local i; for ((i = 0; i < NGPUS; i++)); do ln -sfn /dev/null "$ROOT/dev/nvidia$i"; done
        gres_types="GresTypes=gpu"
        node_gres="Gres=gpu:$NGPUS"
        printf 'AutoDetect=off\nNodeName=localhost Name=gpu File=%s/dev/nvidia[0-%d]\n' "$ROOT" $((NGPUS - 1)) > "$ETC/gres.conf"
    fi
    cat > "$ETC/slurm.conf" <<EOF
# written by tests/slurm/slurm-local.sh: one node 'localhost' on 127.0.0.1, no cgroups
ClusterName=localcluster
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$ROOT/spool/ctld
SlurmdSpoolDir=$ROOT/spool/d
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
$gres_types
# accounting through slurmdbd + MariaDB: the only way sacct works in 22.05
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCK
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $node_gres State=UNKNOWN
# Preemption: a job in 'urgent' requeues running 'debug' jobs. preempt_send_user_signal
# makes Slurm send the job's --signal (submitit: USR2) first, so it can checkpoint.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=${SLURM_LOCAL_GRACE_S:-20}
PartitionName=urgent Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
    cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$ROOT/log/slurmdbd.log
PidFile=$ROOT/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"   # slurmdbd refuses a world-readable config
    if [[ ${SLURM_LOCAL_LINK_ETC:-0} == 1 ]]; then
        mkdir -p /etc/slurm && ln -sfn "$ETC/slurm.conf" /etc/slurm/slurm.conf
    fi
}

start_munge() {
    alive "$ROOT/munge/munged.pid" && return 0
    if [[ ! -f $ROOT/munge/munge.key ]]; then
        dd if=/dev/urandom of="$ROOT/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$ROOT/munge/munge.key"
    fi
    munged --socket="$SOCK" --key-file="$ROOT/munge/munge.key" --pid-file="$ROOT/munge/munged.pid" \
        --log-file="$ROOT/munge/munged.log" --seed-file="$ROOT/munge/munged.seed"
    wait_for 10 munged bash -c "munge -S '$SOCK' -n | unmunge -S '$SOCK'"
}

start_mariadb() {
    local my=$ROOT/mysql
    alive "$my/mysqld.pid" && return 0
    if [[ ! -d $my/data/mysql ]]; then
        mariadb-install-db --no-defaults --datadir="$my/data" --user=root \
            --auth-root-authentication-method=socket --skip-test-db > "$ROOT/log/mariadb-install.log" 2>&1
    fi
    # mariadbd does not daemonize: setsid detaches it; its pid file is how we stop it
    setsid nohup mariadbd --no-defaults --datadir="$my/data" --socket="$my/mysqld.sock" \
        --pid-file="$my/mysqld.pid" --port="$MYSQL_PORT" --bind-address=127.0.0.1 --user=root \
        --log-error="$ROOT/log/mariadb.err" --innodb-buffer-pool-size=64M \
        --innodb-lock-wait-timeout=900 > "$ROOT/log/mariadb.out" 2>&1 < /dev/null &
    wait_for 30 mariadbd mariadb-admin --no-defaults -S "$my/mysqld.sock" ping
    mariadb --no-defaults -S "$my/mysqld.sock" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
    alive "$ROOT/run/slurmdbd.pid" && return 0
    slurmdbd   # no -f option: reads slurmdbd.conf next to $SLURM_CONF
    wait_for 30 slurmdbd sacctmgr -n show cluster
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx localcluster; then
        sacctmgr -i add cluster localcluster > /dev/null   # also creates account root + user root
    fi
}

cmd_start() {
    for b in slurmctld slurmd slurmdbd munged mariadbd; do
        command -v "$b" > /dev/null || { log "$b not installed: run $HERE/install.sh"; exit 3; }
    done
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    alive "$ROOT/run/slurmctld.pid" || slurmctld
    wait_for 30 slurmctld scontrol ping
    alive "$ROOT/run/slurmd.pid" || slurmd -N localhost   # our NodeName is not the hostname
    wait_for 60 "an idle node" bash -c '[[ $(sinfo -h -n localhost -o %t) == idle* ]]'
    log "up in $ROOT: $(sinfo -h -o '%P/%t' | tr '\n' ' ')"
}

# stop_pids PIDFILE...: SIGTERM every live one, then SIGKILL what is left after 15 s
stop_pids() {
    local f pid pids=()
    for f in "$@"; do
        [[ -s $f ]] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then kill "$pid"; pids+=("$pid"); log "stopping $(basename "$f" .pid) ($pid)"; fi
        rm -f "$f"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then log "$pid still alive: SIGKILL"; kill -9 "$pid"; fi
    done
}

# PIDs of slurmstepd processes of this cluster (they carry our SLURM_CONF)
our_stepds() {
    local d
    for d in /proc/[0-9]*; do
        [[ $(cat "$d/comm" 2>/dev/null) == slurmstepd ]] || continue
        tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF" && echo "${d#/proc/}"
    done
    return 0
}

cmd_stop() {
    if alive "$ROOT/run/slurmctld.pid"; then
        # cancel what is left first, so no slurmstepd outlives slurmd
        local jobs; jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [[ -n ${jobs// } ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            wait_for 30 "jobs to end" bash -c '[[ -z $(squeue -h -o %A) ]]' || true
        fi
    fi
    stop_pids "$ROOT/run/slurmd.pid" "$ROOT/run/slurmctld.pid"
    local p; for p in $(our_stepds); do log "killing leftover slurmstepd $p"; kill -9 "$p" 2>/dev/null || true; done
    stop_pids "$ROOT/run/slurmdbd.pid" "$ROOT/mysql/mysqld.pid" "$ROOT/munge/munged.pid"
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$ETC/slurm.conf" ]]; then
        rm -f /etc/slurm/slurm.conf
    fi
}

cmd_status() {
    local f
    for f in "$ROOT/munge/munged.pid" "$ROOT/mysql/mysqld.pid" "$ROOT/run/slurmdbd.pid" \
             "$ROOT/run/slurmctld.pid" "$ROOT/run/slurmd.pid"; do
        if alive "$f"; then echo "up   $(basename "$f" .pid) pid $(cat "$f")"; else echo "down $(basename "$f" .pid)"; fi
    done
    sinfo 2>/dev/null || true
}

case ${1:-} in
    install) "$HERE/install.sh" ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 install|start|stop|restart|status|env" >&2; exit 2 ;;
esac
