#!/usr/bin/env bash
# Short ablations before the efficient-critic MT10 study (issue 34), end to end and resumable:
# 3 seeds x 50k env steps per task of each arm below, all with aggregation.method=uniform, on
# configs/mt10_cpu_efficient_ablation.yaml (the study's protocol and agent at half the steps).
# Each arm switches a few keys of that config back; arm by arm the pieces are added:
#   mt-sac       MT-SAC with the new defaults (configs/mt10_cpu_study.yaml: shared 2 x 128 MLPs,
#                MSE critic, the reference options). Its runs are the reference-parity study's
#                100k "new defaults" runs (restored from its archive, read here at 50k; the
#                step count and the logging interval do not change the first 50k steps)
#   reward-norm  + BRC's per-task reward normalisation, with BRC's temperature (initial 0.1,
#                target entropy -|A|/2), which the normalised reward scale needs
#   categorical  + categorical critic (HL-Gauss, 101 atoms on [-10, 10])
#   bronet       + BroNet critic (128 wide, 1 block), LayerNorm actor, orthogonal init
#   efficient    + learned task embeddings (task-encoder): the config as it is
#   two-hot      efficient with two-hot instead of HL-Gauss targets
#   rr2          efficient with 2 updates per env step (replay ratio 2, about 2x the CPU time)
#   mt-sac-rr2   mt-sac with 2 updates per env step: the replay ratio alone, on the small nets
#   categorical-rr2  categorical with 2 updates per env step (reward normalisation and the
#                categorical critic on the small nets, replay ratio 2)
#   categorical-alpha0.01  categorical with initial temperature 0.01 instead of BRC's 0.1: with
#                normalised rewards (<= 0.1 per step) the entropy bonus at alpha 0.1 outweighs
#                them until alpha has fallen (~10k updates); does a lower start remove the
#                slow first 20k steps?
#   categorical-mean  categorical with BRC's twin-critic mean instead of SAC's min in the target
#                and the actor loss (agent.q_reduction=mean)
#   efficient-mean  efficient with the twin-critic mean
#   efficient-brc  BRC's recipe at the CPU sizes (critic 128 wide, one block): efficient with
#                every BRC detail that is an option: the c51 projected target with the
#                twin-critic mean, the actor loss after the critic step, AdamW (weight decay
#                1e-4), one temperature (Adam beta1 0.5), BRC's task embedding (32-dim unit rows
#                in the critic, read by the actor), a BroNet actor (128 wide, one block) with
#                tanh-squashed log-std in [-10, 2], orthogonal output layers, no gradient clip,
#                Adam eps 1e-8 (the reference MT-SAC options off). The choice rule picked it
#                for the study, so it is configs/mt10_cpu_efficient.yaml as it is: its runs are
#                the study's uniform runs (restored from the study's archive, read here at 50k;
#                a 100k run's first 50k steps are the 50k run's, evaluation for evaluation)
# Runs live in runs/sweeps/mt10_cpu_efficient_ablation/<arm>/uniform/seed_<s>. Finished runs
# are archived into docs/results/mt10_cpu_efficient_ablation/runs/ (the mt-sac arm's next to the
# parity study's) and restored from there first, so a new machine continues where the last one
# stopped. The report (mean success +- SEM, IQM, per task, differences from mt-sac, wall time
# per run, gradient stability and task interference per arm), every run read at 50k steps,
# goes to docs/results/mt10_cpu_efficient_ablation/ for the final and for the mean of the last
# three evaluations (report_last3/). Rows are labelled by arm folder (categorical/uniform, ...).
# Run it again to continue (finished runs are skipped, interrupted ones resumed).
#   scripts/ablate_mt10_cpu_efficient.sh                       all arms, seeds 0..2
#   scripts/ablate_mt10_cpu_efficient.sh --arms mt-sac,rr2     some arms
#   scripts/ablate_mt10_cpu_efficient.sh --report-only         only the report
# Further arguments go to every sweep, e.g. --workers 2. Nothing is committed.
set -uo pipefail
set -f  # no globbing: overrides such as agent.critic_hidden=[128] are literal words
cd "$(dirname "$0")/.."
CONFIG=configs/mt10_cpu_efficient_ablation.yaml
MT_SAC_CONFIG=configs/mt10_cpu_study.yaml
STUDY_CONFIG=configs/mt10_cpu_efficient.yaml
STEPS=50000
# SWEEPS, RESULTS and SEEDS can be set from outside (smoke tests)
SWEEPS=${SWEEPS:-runs/sweeps/mt10_cpu_efficient_ablation}
RESULTS=${RESULTS:-docs/results/mt10_cpu_efficient_ablation}
SEEDS=${SEEDS:-0,1,2}
ARCHIVE=$RESULTS/runs
MT_SAC_ARCHIVE=${MT_SAC_ARCHIVE:-docs/results/mt10_reference_parity/runs/new_defaults}
# the efficient-critic study's runs (scripts/study_mt10_cpu_efficient.sh): arm efficient-brc
STUDY_ARCHIVE=${STUDY_ARCHIVE:-docs/results/mt10_cpu_efficient/runs/efficient}
MTRL=(python -m mtrl_align.cli)

MT_SAC=(agent.variant=shared "agent.critic_hidden=[128,128]" agent.critic_trunk=mlp
  agent.layer_norm=false agent.critic_loss=mse agent.reward_normalization=false
  agent.init=he-uniform agent.init_temperature=1.0 agent.target_entropy=null)
declare -A ARM
ARM[mt-sac]=""  # trained on $MT_SAC_CONFIG as it is
ARM[reward-norm]="${MT_SAC[*]} agent.reward_normalization=true agent.init_temperature=0.1 agent.target_entropy=-2.0"
ARM[categorical]="${ARM[reward-norm]} agent.critic_loss=hl-gauss"
ARM[bronet]="${ARM[categorical]} agent.critic_trunk=bronet agent.critic_hidden=[128] agent.layer_norm=true agent.init=orthogonal"
ARM[efficient]=""
ARM[two-hot]="agent.critic_loss=two-hot"
ARM[rr2]="train.updates_per_env_step=2"
ARM[mt-sac-rr2]="${MT_SAC[*]} train.updates_per_env_step=2"
ARM[categorical-rr2]="${ARM[categorical]} train.updates_per_env_step=2"
ARM[categorical-alpha0.01]="${ARM[categorical]} agent.init_temperature=0.01"
ARM[categorical-mean]="${ARM[categorical]} agent.q_reduction=mean"
ARM[efficient-mean]="agent.q_reduction=mean"
ARM[efficient-brc]=""  # trained on $STUDY_CONFIG as it is
ORDER=(mt-sac reward-norm categorical bronet efficient two-hot rr2 mt-sac-rr2 categorical-rr2
  categorical-alpha0.01 categorical-mean efficient-mean efficient-brc)
# rows are labelled by their folders (efficient/uniform, mt-sac/uniform, ...)
BASELINE="mt-sac/uniform"

arms=("${ORDER[@]}")
report_only=0
rest=()
while (($#)); do
  case "$1" in
    --arms) IFS=, read -r -a arms <<<"$2"; shift 2 ;;
    --report-only) report_only=1; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
for arm in "${arms[@]}"; do
  if [[ -z ${ARM[$arm]+set} ]]; then
    echo "ablation: unknown arm '$arm'; choose from: ${ORDER[*]}" >&2
    exit 2
  fi
done

status=0
# archived runs back first, so the sweeps skip them (a refusal must be sorted out by hand)
if [[ -d $ARCHIVE ]]; then
  "${MTRL[@]}" restore "$ARCHIVE" "$SWEEPS" || exit $?
fi
if [[ -d $MT_SAC_ARCHIVE ]]; then
  "${MTRL[@]}" restore "$MT_SAC_ARCHIVE" "$SWEEPS/mt-sac" || exit $?
fi
if [[ -d $STUDY_ARCHIVE/uniform ]]; then
  "${MTRL[@]}" restore "$STUDY_ARCHIVE/uniform" "$SWEEPS/efficient-brc/uniform" || exit $?
fi
if [[ $report_only == 0 ]]; then
  # seed by seed, so that every arm has the same number of seeds at every stop
  for seed in ${SEEDS//,/ }; do
    for arm in "${arms[@]}"; do
      config=$CONFIG
      [[ $arm == mt-sac ]] && config=$MT_SAC_CONFIG
      [[ $arm == efficient-brc ]] && config=$STUDY_CONFIG
      # shellcheck disable=SC2086  # the arm's overrides are words
      "${MTRL[@]}" sweep "$config" --seeds "$seed" --methods uniform --out "$SWEEPS/$arm" \
        ${ARM[$arm]} "${rest[@]}" || status=$?
    done
  done
  case " ${rest[*]} " in *" --dry-run "*|*" --no-wait "*) exit $status ;; esac
fi

if [[ ! -d $SWEEPS ]]; then
  echo "ablation: no runs under $SWEEPS yet" >&2
  exit 1
fi
for arm in $(find "$SWEEPS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort); do
  target=$ARCHIVE/$arm
  [[ $arm == mt-sac ]] && target=$MT_SAC_ARCHIVE
  [[ $arm == efficient-brc ]] && target=$STUDY_ARCHIVE
  "${MTRL[@]}" archive "$SWEEPS/$arm" "$target" >/dev/null || status=$?
done
for metric in final last3; do
  out=$RESULTS
  [[ $metric == last3 ]] && out=$RESULTS/report_last3
  if "${MTRL[@]}" report "$SWEEPS" --out "$out" --metric "$metric" --baseline "$BASELINE" --labels folders \
    --at-steps "$STEPS" >/dev/null; then
    echo "ablation: report ($metric) in $out/report.md"
  else
    echo "ablation: no $metric report yet (no finished run, or the mt-sac arm missing?)" >&2
    status=1
  fi
done
exit $status
