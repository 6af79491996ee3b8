#!/bin/sh
# A single-node Slurm on this machine for `make test-cluster` (no systemd): munged,
# slurmctld and slurmd as daemons, proctrack/linuxproc, task/none, accounting off.
# Installs slurm-wlm and munge with apt-get when they are missing. Prints one line and
# exits 3 when that is not possible (the cluster tests then skip).
set -u
if ! command -v slurmctld >/dev/null 2>&1; then
    if ! (apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1); then
        echo "slurm-up: cannot install slurm-wlm and munge here (apt-get failed); cluster tests skip"
        exit 3
    fi
fi
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=trustlab
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 30); do
    if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
        echo "slurm-up: single-node Slurm on $HOST ($CPUS CPUs) is up"
        exit 0
    fi
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1
    sleep 1
done
echo "slurm-up: Slurm daemons did not come up (see /var/log/slurm); cluster tests skip"
exit 3
