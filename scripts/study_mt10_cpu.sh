#!/usr/bin/env bash
# The reduced MT10 study of docs/results/mt10_cpu_study.md, end to end and resumable:
#   1. restore the runs archived in git (docs/results/mt10_cpu_study/runs/) into
#      runs/sweeps/mt10_cpu_study/, so the sweeps skip them;
#   2. sweep uniform (MT-SAC), Aligned-MTL, PCGrad, CAGrad (c = 0.9), Nash-MTL x seeds 0..4 on
#      configs/mt10_cpu_study_v1.yaml (runs/sweeps/mt10_cpu_study/shared), then multi-head
#      uniform (MH-SAC, agent.variant=multi-head) x seeds 0..4 (.../multi-head);
#   3. archive every finished run (config.yaml, eval.jsonl, status.json, scalars.jsonl; no
#      checkpoints, no TensorBoard) into docs/results/mt10_cpu_study/runs/;
#   4. report over runs/sweeps/mt10_cpu_study into docs/results/mt10_cpu_study/ and fill the
#      Status, Results and Stability blocks of docs/results/mt10_cpu_study.md.
# Run it again to continue (finished runs are skipped, interrupted ones resumed).
# Extra arguments go to both sweeps, e.g.   scripts/study_mt10_cpu.sh --workers 4
# Only steps 3 and 4 (e.g. while the sweeps run, before a machine goes away):
#   scripts/study_mt10_cpu.sh --archive-only
# Nothing is committed: commit docs/results/ yourself (git add docs/results/mt10_cpu_study*).
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/mt10_cpu_study_v1.yaml
SWEEPS=runs/sweeps/mt10_cpu_study
RESULTS=docs/results/mt10_cpu_study
ARCHIVE=$RESULTS/runs
PAGE=docs/results/mt10_cpu_study.md
MTRL=(python -m mtrl_align.cli)

archive_only=0
if [[ "${1:-}" == "--archive-only" ]]; then
  archive_only=1
  shift
fi

status=0
if [[ $archive_only == 0 ]]; then
  if [[ -d $ARCHIVE ]]; then
    # A refusal here (a run directory with other settings at an archived run's place) must be
    # sorted out before sweeping, or the sweep would train the run again.
    "${MTRL[@]}" restore "$ARCHIVE" "$SWEEPS" || exit $?
  fi
  # Seed by seed (every method's seed 0, then seed 1, ...), so that a study spread over many
  # machines has all six methods at the same number of seeds at every stop. Same config and
  # folders as the sweep that started the uniform seeds, so its runs are skipped.
  for seed in 0 1 2 3 4; do
    "${MTRL[@]}" sweep "$CONFIG" --seeds "$seed" \
      --methods uniform,aligned-mtl,pcgrad,cagrad,nash-mtl --out "$SWEEPS/shared" \
      "cagrad:aggregation.options.c=0.9" "$@" || status=$?
    "${MTRL[@]}" sweep "$CONFIG" --seeds "$seed" --methods uniform --out "$SWEEPS/multi-head" \
      agent.variant=multi-head "$@" || status=$?
  done
  case " $* " in *" --dry-run "*|*" --no-wait "*) exit $status ;; esac
fi

if [[ ! -d $SWEEPS ]]; then
  echo "study: no runs under $SWEEPS yet" >&2
  exit 1
fi
"${MTRL[@]}" archive "$SWEEPS" "$ARCHIVE" || exit $?
if "${MTRL[@]}" report "$SWEEPS" --out "$RESULTS" --metric final \
  --baseline "uniform (agent.variant=shared)" >/dev/null; then
  echo "study: report in $RESULTS/report.md"
  for png in "$RESULTS"/*.png; do
    [[ -f $png ]] || continue
    size=$(stat -c %s "$png")
    if ((size > 200000)); then
      echo "study: warning: $png is $size bytes (> 200 KB); keep committed plots small" >&2
    fi
  done
else
  echo "study: no report yet (no finished run?)" >&2
fi
python scripts/study_mt10_cpu_page.py "$PAGE" "$ARCHIVE" "$RESULTS" || status=$?
exit $status
