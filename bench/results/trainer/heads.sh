#!/bin/bash
# A/B/A/B: our loss (head at completion positions) vs TRL's own (--full-head), same rows, quiet machine.
cd /work/main
run() { rm -rf /tmp/tb/h; .venv/bin/python -m thinkling.distill train --recipe $1 --data $2 --out /tmp/tb/h --steps $3 --batch-size $4 --threads 2 --save-every 1000 $5 2>&1 | grep -o "'train_runtime': '[0-9.]*', 'train_samples_per_second': '[0-9.]*', 'train_steps_per_second': '[0-9.]*'" | sed "s/^/$1 ${5:-ours} /"; }
uptime
for i in 1 2; do
  run arith-student /tmp/tb/data 300 32 ""
  run arith-student /tmp/tb/data 300 32 --full-head
done
for i in 1 2; do
  run gemma-3-270m /tmp/tb/gdata 3 16 ""
  run gemma-3-270m /tmp/tb/gdata 3 16 --full-head
done
uptime
