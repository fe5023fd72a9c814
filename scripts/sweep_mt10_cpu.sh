#!/usr/bin/env bash
# A reduced MT10 comparison that runs on a CPU machine: 5 methods x 3 seeds on MT10 with the
# small networks of configs/mt10_demo.yaml (2 x 128, 150-step episodes) for 20k env steps per
# task, one run per core. Far from the paper's numbers (see docs/sweep.md for the cost).
# Extra arguments go to the sweep, e.g.  scripts/sweep_mt10_cpu.sh --workers 4
# Other methods (any of `mtrl-align`'s 30, e.g. the issue-15 ones):
#   METHODS=uniform,famo,upgrad,fairgrad scripts/sweep_mt10_cpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/sweeps/mt10_cpu}
METHODS=${METHODS:-uniform,pcgrad,cagrad,nash-mtl,aligned-mtl}
PER_METHOD=()
case ",$METHODS," in *,cagrad,*) PER_METHOD+=("cagrad:aggregation.options.c=0.9") ;; esac
python -m mtrl_align.cli sweep configs/mt10_demo.yaml --seeds 0:3 \
  --methods "$METHODS" --out "$OUT" \
  train.total_env_steps=20000 eval.every_env_steps=2000 eval.episodes_per_task=10 \
  "${PER_METHOD[@]}" "$@"
status=$?
case " $* " in *" --dry-run "*|*" --no-wait "*) exit $status ;; esac
python -m mtrl_align.cli report "$OUT" --metric final || exit $?
exit $status
