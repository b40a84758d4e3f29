#!/usr/bin/env bash
# Stops the daemons scripts/slurm-up.sh started (by their PIDs), nothing else.
set -uo pipefail
state=/run/lawa-slurm
for d in slurmd slurmctld munged; do
    if [ -s "$state/$d.pid" ]; then
        kill "$(cat "$state/$d.pid")" 2>/dev/null || true
        rm -f "$state/$d.pid"
    fi
done
