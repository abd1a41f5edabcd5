#!/bin/sh
# Slurm Prolog (runs as root on each node before a job): make sure the oomguard daemon is up,
# so that `srun oomguard run --checkpoint-signal USR1 -- python train.py` in the batch script
# can shield and guard the step. Install: Prolog=/etc/slurm/prolog.d/oomguard.sh in slurm.conf.
systemctl is-active --quiet oomguard.service || systemctl start oomguard.service
exit 0
