#!/usr/bin/env bash
# A one-node Slurm cluster (controller and compute node on this machine) for the sweep tests:
# Debian's slurm-wlm and munge, no cgroups, no accounting. Idempotent: a cluster that already
# answers (`sinfo`) is left alone. Needs root (apt, daemons). `scripts/slurm-down.sh` stops
# only the daemons this script started.
set -euo pipefail

state=/run/lawa-slurm
if command -v sinfo >/dev/null 2>&1 && timeout 5 sinfo -h >/dev/null 2>&1; then
    echo "slurm-up: a cluster already answers; left alone"
    exit 0
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
mkdir -p "$state"

# munge: a key owned by its user, the daemon run as that user.
if [ ! -s /etc/munge/munge.key ]; then
    /usr/sbin/mungekey -c
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    su -s /bin/sh munge -c /usr/sbin/munged
    pgrep -u munge -n munged >"$state/munged.pid"
fi
for _ in $(seq 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
done

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

/usr/sbin/slurmctld
sleep 2
pgrep -n slurmctld >"$state/slurmctld.pid"
/usr/sbin/slurmd
sleep 1
pgrep -n slurmd >"$state/slurmd.pid"
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        echo "slurm-up: node $host idle ($cpus CPUs)"
        exit 0
    fi
    sleep 0.5
done
echo "slurm-up: the node did not become idle; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1
