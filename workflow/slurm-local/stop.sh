#!/usr/bin/env bash
# Stop the daemons start.sh started (by their pid files; munged by its own pid file).
set -uo pipefail
STATE="${SLURM_LOCAL_STATE:-/var/lib/saerepro-slurm}"
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" && echo "stopped $(basename "$pidfile" .pid)"
    fi
done
