#!/usr/bin/env bash
# One FairTune worker: the same line on every machine joins the same study.
#
#   export SKFAIRTUNE_STORAGE='postgresql+psycopg://user:password@db-host:5432/fairtune'
#   bash examples/distributed_worker.sh examples/distributed_spec.json      # on each machine
#   sbatch --array=0-7 --gres=gpu:1 examples/distributed_worker.sh spec.json  # or 8 SLURM tasks
#
# The workers run `search.n_trials` trials together (see docs/distributed.md); then exactly
# one of them (the first to claim it in the storage) refits the shared best and writes
# $REFIT_OUT (default fairtune-best.pkl; put it on a shared directory). Each worker logs one
# timestamped line per trial. The password stays in the environment, out of the spec file
# and out of `ps`.
#SBATCH --job-name=fairtune-worker
#SBATCH --time=12:00:00
#SBATCH --cpus-per-task=8
#SBATCH --output=fairtune-worker-%A_%a.log
set -euo pipefail
: "${SKFAIRTUNE_STORAGE:?set SKFAIRTUNE_STORAGE to the database URL of the study}"
exec skfairtune worker --spec "${1:?usage: $0 SPEC.json}" --refit-out "${REFIT_OUT:-fairtune-best.pkl}"
