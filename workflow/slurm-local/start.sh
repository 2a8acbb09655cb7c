#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine: munged, slurmctld and slurmd, all on localhost.
#
#   sudo apt-get install -y slurm-wlm munge      # Debian/Ubuntu
#   sudo workflow/slurm-local/start.sh           # idempotent; prints `sinfo` when the node is up
#   workflow/slurm-local/stop.sh                 # stops the three daemons
#
# Needs root (the daemons run as root, the key and the config go under /etc). The config is
# written to $SLURM_CONF (default /etc/slurm/slurm.conf, where sbatch/squeue look without
# being told) from slurm.conf.in next to this script, with this machine's short hostname, CPU
# count and memory. State and logs go under $SLURM_LOCAL_STATE (default /var/lib/saerepro-slurm).
# slurmd runs under `nice -n 19`, and jobs inherit its nice value, so the cluster's jobs yield
# the CPU to anything else on the machine.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
STATE="${SLURM_LOCAL_STATE:-/var/lib/saerepro-slurm}"

for cmd in munged slurmctld slurmd sinfo; do
    command -v "$cmd" >/dev/null || { echo "start.sh: $cmd not found; apt-get install -y slurm-wlm munge" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "start.sh: run as root (the SLURM daemons and munged's key need it)" >&2; exit 1; }

host="$(hostname -s)"
cpus="$(nproc)"
# Offer SLURM 85% of the physical memory (slurmd drains a node that claims more than it has).
mem_mb="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)"

mkdir -p "$(dirname "$CONF")" "$STATE"/{ctld,d,log}
sed -e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM_MB@|$mem_mb|g" -e "s|@STATE@|$STATE|g" \
    "$HERE/slurm.conf.in" > "$CONF.new"
changed=1
if cmp -s "$CONF.new" "$CONF"; then changed=0; fi
mv "$CONF.new" "$CONF"
echo "wrote $CONF (node $host, $cpus CPUs, $mem_mb MB)"

# munge: one key shared by all daemons (the Debian package creates one; make one if missing).
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    sleep 1
fi
munge -n </dev/null | unmunge >/dev/null || { echo "start.sh: munged is not answering" >&2; exit 1; }

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running "$STATE/slurmctld.pid" && running "$STATE/slurmd.pid"; then
    # Already up: a changed config needs the daemons to reread it.
    if [ "$changed" -eq 1 ]; then SLURM_CONF="$CONF" scontrol reconfigure; fi
fi
if ! running "$STATE/slurmctld.pid"; then
    SLURM_CONF="$CONF" slurmctld   # daemonises, keeping the state it saved in $STATE/ctld
fi
if ! running "$STATE/slurmd.pid"; then
    SLURM_CONF="$CONF" nice -n 19 slurmd
fi

# Wait for the node to register and become idle.
for _ in $(seq 1 30); do
    state="$(SLURM_CONF="$CONF" sinfo -h -N -n "$host" -o %t 2>/dev/null || true)"
    case "$state" in
        idle*|mix*|alloc*) break ;;
        drain*|down*|inval*)
            SLURM_CONF="$CONF" scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
SLURM_CONF="$CONF" sinfo -N -l
case "$state" in
    idle*|mix*|alloc*) echo "SLURM is up: node $host in partition debug" ;;
    *) echo "start.sh: node $host is '$state'; see $STATE/log/slurmd.log and slurmctld.log" >&2; exit 1 ;;
esac
