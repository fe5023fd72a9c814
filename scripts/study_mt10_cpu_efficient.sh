#!/usr/bin/env bash
# The efficient-critic MT10 study (issue 34; page docs/results/mt10_cpu_efficient.md), end to
# end and resumable, on configs/mt10_cpu_efficient.yaml (all ten tasks, 100k env steps per task,
# 150-step episodes, 20 evaluation episodes per task, one thread per run):
#   1. restore the runs archived in git into runs/sweeps/mt10_cpu_efficient/: this study's
#      (docs/results/mt10_cpu_efficient/runs/) and the 30 runs of the first CPU study
#      (docs/results/mt10_cpu_study/runs/ -> .../mt10_cpu_study/; only read by the report);
#   2. seeds 0..4 of the efficient critic with uniform, aligned-mtl and pcgrad (.../efficient;
#      one sweep, method by method, so that --workers 2 keeps both cores busy: 15 runs), and
#      MT-SAC with the new defaults (configs/mt10_cpu_study.yaml, the reference options;
#      .../mt-sac). Those MT-SAC runs are the reference-parity study's "new defaults"
#      (docs/results/mt10_reference_parity/runs/new_defaults/): they are restored first, so
#      only seeds that study has not finished are trained;
#   3. archive every finished run of step 2 (config.yaml, eval.jsonl, status.json,
#      scalars.jsonl): the efficient runs into docs/results/mt10_cpu_efficient/runs/, the
#      MT-SAC runs next to the parity study's;
#   4. report over all of runs/sweeps/mt10_cpu_efficient (these runs and the first study's):
#      docs/results/mt10_cpu_efficient/report.md with the final evaluation and
#      docs/results/mt10_cpu_efficient/report_last3/report.md with the mean of the last three,
#      differences from the new MT-SAC row, wall time, stability and task interference; and
#      the efficient rows alone against their uniform row (does the aggregator still matter?):
#      docs/results/mt10_cpu_efficient/aggregators/report.md (and report_last3/ below it).
# Run it again to continue (finished runs are skipped, interrupted ones resumed).
# Extra arguments go to every sweep, e.g.   scripts/study_mt10_cpu_efficient.sh --workers 2
# Only steps 3 and 4:                        scripts/study_mt10_cpu_efficient.sh --archive-only
# Nothing is committed: commit docs/results/ yourself (git add docs/results/mt10_cpu_efficient*).
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/mt10_cpu_efficient.yaml
# SWEEPS, RESULTS, SEEDS and FIRST_STUDY can be set from outside (smoke tests)
SWEEPS=${SWEEPS:-runs/sweeps/mt10_cpu_efficient}
RESULTS=${RESULTS:-docs/results/mt10_cpu_efficient}
SEEDS=${SEEDS:-0,1,2,3,4}
FIRST_STUDY=${FIRST_STUDY-docs/results/mt10_cpu_study/runs}
ARCHIVE=$RESULTS/runs
# MT-SAC with the new defaults: the config and the archive of the reference-parity study
MT_SAC_CONFIG=configs/mt10_cpu_study.yaml
MT_SAC_ARCHIVE=${MT_SAC_ARCHIVE:-docs/results/mt10_reference_parity/runs/new_defaults}
MTRL=(python -m mtrl_align.cli)
# rows are labelled by their folders (efficient/uniform, mt-sac/uniform, ...)
BASELINE="mt-sac/uniform"

archive_only=0
if [[ "${1:-}" == "--archive-only" ]]; then
  archive_only=1
  shift
fi

status=0
if [[ $archive_only == 0 ]]; then
  # A refusal here (a run directory with other settings at an archived run's place) must be
  # sorted out before sweeping, or the sweep would train the run again.
  if [[ -d $ARCHIVE ]]; then
    "${MTRL[@]}" restore "$ARCHIVE" "$SWEEPS" || exit $?
  fi
  if [[ -d $MT_SAC_ARCHIVE ]]; then
    "${MTRL[@]}" restore "$MT_SAC_ARCHIVE" "$SWEEPS/mt-sac" || exit $?
  fi
  if [[ -n $FIRST_STUDY && -d $FIRST_STUDY ]]; then
    "${MTRL[@]}" restore "$FIRST_STUDY" "$SWEEPS/mt10_cpu_study" || exit $?
  fi
  "${MTRL[@]}" sweep "$CONFIG" --seeds "$SEEDS" --methods uniform,aligned-mtl,pcgrad \
    --out "$SWEEPS/efficient" "$@" || status=$?
  "${MTRL[@]}" sweep "$MT_SAC_CONFIG" --seeds "$SEEDS" --methods uniform \
    --out "$SWEEPS/mt-sac" "$@" || status=$?
  case " $* " in *" --dry-run "*|*" --no-wait "*) exit $status ;; esac
fi

if [[ ! -d $SWEEPS ]]; then
  echo "study: no runs under $SWEEPS yet" >&2
  exit 1
fi
if [[ -d $SWEEPS/efficient ]]; then
  "${MTRL[@]}" archive "$SWEEPS/efficient" "$ARCHIVE/efficient" || exit $?
fi
if [[ -d $SWEEPS/mt-sac ]]; then
  "${MTRL[@]}" archive "$SWEEPS/mt-sac" "$MT_SAC_ARCHIVE" || exit $?
fi
# report ROOT OUT METRIC BASELINE: one report with folder labels, plots checked for size
report() {
  local root=$1 out=$2 metric=$3 baseline=$4
  if "${MTRL[@]}" report "$root" --out "$out" --metric "$metric" --baseline "$baseline" \
    --labels folders >/dev/null; then
    echo "study: report ($metric) in $out/report.md"
    for png in "$out"/*.png; do
      [[ -f $png ]] || continue
      size=$(stat -c %s "$png")
      if ((size > 200000)); then
        echo "study: warning: $png is $size bytes (> 200 KB); keep committed plots small" >&2
      fi
    done
  else
    echo "study: no $metric report in $out yet (no finished run, or no finished $baseline run?)" >&2
    status=1
  fi
}
for metric in final last3; do
  suffix=""
  [[ $metric == last3 ]] && suffix=/report_last3
  # every row against MT-SAC
  report "$SWEEPS" "$RESULTS$suffix" "$metric" "$BASELINE"
  # the aggregators on the efficient critic against its uniform row
  if [[ -d $SWEEPS/efficient ]]; then
    report "$SWEEPS/efficient" "$RESULTS/aggregators$suffix" "$metric" uniform
  fi
done
exit $status
