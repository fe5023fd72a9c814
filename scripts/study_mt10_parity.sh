#!/usr/bin/env bash
# Reference parity of our MT-SAC (docs/results/mt10_reference_parity.md), resumable:
#   defaults   our MT-SAC with the reference's settings (configs/mt10_cpu_study.yaml), seeds 0-4
#              at the study's budget (100k env steps per task)          -> $SWEEPS/new_defaults
#   ablations  each of the four settings alone on top of the old ones (configs/
#              mt10_cpu_study_v1.yaml), 50k steps per task, seeds 0-2   -> $SWEEPS/ablations/<name>
#   reference  the reference MTSAC itself (metaworld-algorithms, run by
#              mtrl_align.bench.jax_peer_training at the same budget), seeds 0-2
#                                                                         -> $SWEEPS/reference
#   report     restore the archived runs, archive the finished ones, and write the reports:
#              full budget (reference, old defaults = the first study's 5 MT-SAC runs, new
#              defaults) and at 50k steps (the same plus the ablations).
# Usage: scripts/study_mt10_parity.sh [defaults|ablations|reference|report|all]
# Run parts side by side on different cores (each trains one run at a time, one thread);
# run the same command again to continue (finished runs are skipped, interrupted ones resumed;
# a reference run restarts from scratch, the peer's loop cannot resume).
# The reference part needs the peer checkout and its venv (docs/jax_peer.md):
#   MTRL_ALIGN_JAX_PEER=/work/peer/metaworld-algorithms MTRL_ALIGN_JAX_PEER_PYTHON=/work/peer/.venv/bin/python
# Nothing is committed: commit docs/results/mt10_reference_parity* yourself.
set -uo pipefail
cd "$(dirname "$0")/.."
SWEEPS=runs/sweeps/mt10_parity
RESULTS=docs/results/mt10_reference_parity
ARCHIVE=$RESULTS/runs
OLD_RUNS=docs/results/mt10_cpu_study/runs/shared/uniform
MTRL=(python -m mtrl_align.cli)
# the report's label of the old defaults (rows are labelled by the keys in which they differ)
V1_LABEL="uniform (agent.actor_head_init=None, agent.adam_eps=1e-08, agent.critic_head_init=None, agent.grad_clip=None, agent.init=torch, agent.log_std_bound=tanh)"
part=${1:-all}
status=0

restore() {
  if [[ -d $ARCHIVE ]]; then
    "${MTRL[@]}" restore "$ARCHIVE" "$SWEEPS" || exit $?
  fi
}

defaults() {
  for seed in 0 1 2 3 4; do
    "${MTRL[@]}" sweep configs/mt10_cpu_study.yaml --seeds "$seed" --methods uniform \
      --workers 1 --out "$SWEEPS/new_defaults" || status=$?
  done
}

ablation() {  # name, overrides...
  local name=$1 seed=$2
  shift 2
  "${MTRL[@]}" sweep configs/mt10_cpu_study_v1.yaml --seeds "$seed" --methods uniform \
    --workers 1 --out "$SWEEPS/ablations/$name" train.total_env_steps=50000 "$@" || status=$?
}

ablations() {
  for seed in 0 1 2; do
    ablation log_std_clip "$seed" agent.log_std_bound=clip
    ablation he_uniform_init "$seed" agent.init=he-uniform agent.actor_head_init=0.001 \
      agent.critic_head_init=0.003
    ablation grad_clip "$seed" agent.grad_clip=1.0
    ablation adam_eps "$seed" agent.adam_eps=1e-5
  done
}

reference() {
  python -m mtrl_align.bench.jax_peer_training --out "$SWEEPS/reference" --seeds 0:3 \
    --steps-per-task 100000 --episode-steps 150 --warmstart 1500 --per-task-batch 128 \
    --width 128 --depth 2 --eval-every 10000 --eval-episodes 20 --threads 1 || status=$?
}

report() {
  [[ -d $SWEEPS ]] || { echo "parity: no runs under $SWEEPS yet" >&2; exit 1; }
  # the first study's MT-SAC runs are the old defaults
  mkdir -p "$SWEEPS/old_defaults"
  for run in "$OLD_RUNS"/seed_*; do
    [[ -d $SWEEPS/old_defaults/$(basename "$run") ]] || cp -r "$run" "$SWEEPS/old_defaults/"
  done
  # archive our new runs and the reference's (the old defaults stay archived with the first study)
  for name in reference new_defaults ablations; do
    [[ -d $SWEEPS/$name ]] && { "${MTRL[@]}" archive "$SWEEPS/$name" "$ARCHIVE/$name" || status=$?; }
  done
  for metric in final last3; do
    # at 100k: the 50k ablations never get there, so they are left out of this table
    "${MTRL[@]}" report "$SWEEPS" --out "$RESULTS/full_$metric" --metric "$metric" --at-steps 100000 \
      --baseline reference-mtsac --no-stability >/dev/null || status=$?
    "${MTRL[@]}" report "$SWEEPS" --out "$RESULTS/at_50k_$metric" --metric "$metric" \
      --at-steps 50000 --baseline reference-mtsac --no-stability >/dev/null || status=$?
    # which setting mattered: every row at 50k against the old defaults
    "${MTRL[@]}" report "$SWEEPS" --out "$RESULTS/at_50k_vs_v1_$metric" --metric "$metric" \
      --at-steps 50000 --baseline "$V1_LABEL" --no-stability >/dev/null || status=$?
  done
  echo "parity: reports in $RESULTS/{full,at_50k,at_50k_vs_v1}_{final,last3}/report.md"
}

case $part in
  defaults) restore; defaults ;;
  ablations) restore; ablations ;;
  reference) reference ;;
  report) report ;;
  all) restore; reference; defaults; ablations; report ;;
  *) echo "unknown part '$part'; choose from: defaults, ablations, reference, report, all" >&2; exit 2 ;;
esac
exit $status
