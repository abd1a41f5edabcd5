#!/bin/sh
# Slurm Epilog (runs as root on each node after a job): record every OOM kill on this node
# since the job started, by any killer, next to the job's output, so "why did my job die" has
# an answer. Install: Epilog=/etc/slurm/epilog.d/oomguard.sh in slurm.conf.
out_dir=${SLURM_JOB_WORK_DIR:-/var/log/oomguard}
start=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/.*StartTime=\([^ ]*\).*/\1/p')
mkdir -p "$out_dir" 2>/dev/null
oomguard history --since "${start:-1 hour ago}" --json > "$out_dir/oomguard-kills-$SLURM_JOB_ID.json" 2>/dev/null
exit 0
