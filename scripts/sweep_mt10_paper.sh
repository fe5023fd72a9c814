#!/usr/bin/env bash
# The paper's MT10 comparison: every aggregation method x 10 seeds on the full protocol of
# configs/mt10_aligned_mtl_paper.yaml (150-step episodes, reward v1, 2M env steps per task,
# 3 x 400 SAC), then the tables with both the final and the best evaluation.
# A GPU / cluster job: see docs/sweep.md for what it costs. Extra arguments go to the sweep,
# e.g.  scripts/sweep_mt10_paper.sh --backend submitit --partition gpu --gpus-per-run 1
# Running it again skips finished runs and resumes interrupted ones.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/sweeps/mt10_paper}
METHODS=uniform,aligned-mtl,aligned-mtl-ub,pcgrad,cagrad,nash-mtl,imtl-g,mgda,mgda-ub,graddrop,gradvac,gradops,rlw,dwa,uncertainty,gradnorm
# issue 15 (docs/aggregation.md, "More methods")
METHODS=$METHODS,famo,fairgrad,upgrad,dualproj,config-grad,sdmgrad,moco,modo,stch,db-mtl,excess-mtl,imtl-l,imtl,gls
# methods only defined for losses >= 0 aggregate the critic only (the SAC actor loss is
# negative): the config leaves aggregation.networks at its per-method default
python -m mtrl_align.cli sweep configs/mt10_aligned_mtl_paper.yaml --seeds 0:10 \
  --methods "$METHODS" --out "$OUT" "cagrad:aggregation.options.c=0.9" "$@"
status=$?  # 1 when some runs failed: report the finished ones anyway
case " $* " in *" --dry-run "*|*" --no-wait "*) exit $status ;; esac
python -m mtrl_align.cli report "$OUT" --metric best --out "$OUT/report_best" || exit $?
python -m mtrl_align.cli report "$OUT" --metric final --out "$OUT/report_final" || exit $?
exit $status
