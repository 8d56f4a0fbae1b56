"""Multi-objective search: a Pareto front of worst-group AUC against overall AUC.

With a list ``scoring`` the study has one objective per name and every trial
a vector of validation values. The search keeps the non-dominated trials in
``pareto_front_`` (their masks, learning rates and values), stops trials
early with successive halving on the Pareto order (a trial that enough
others dominate at a rung stops there), and refits the trial that
``refit`` chooses: ``"utopia"`` (closest to the best value of every
objective after min-max scaling), the name of one objective, or a callable
over ``cv_results_``. ``"n_trainable_params"`` may be one of the objectives,
a cost to minimise.

The data and backbone are the quickstart's (a biased synthetic image task, the
12-block demo ViT shipped with the package). The script prints the front, the
trial each refit rule picks, the hypervolume of the front (from the reference
point (0.5, 0.5), chance on both AUCs) and, with ``--figures DIR``, saves the
front and the hypervolume over trials as PNG files.

Takes about 15 s of CPU time on 2 CPU cores (``--quick``: about 10 s).

Run: ``python examples/multi_objective.py [--quick] [--figures DIR]``
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import make_biased_images
from skfairtune.demo import DEMO_BACKBONE, DEMO_MODEL_KWARGS
from skfairtune.metrics import min_group_auc, overall_auc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer images and trials (seconds)")
parser.add_argument("--figures", type=Path, help="save pareto_front.png and hypervolume.png here")
args = parser.parse_args()

data = make_biased_images(400 if args.quick else 800, image_size=16, random_state=0)
X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
    data.images, data.target, data.sensitive_features, test_size=0.3, random_state=0,
    stratify=data.target.astype(str) + data.sensitive_features["group"].astype(str))

vit = FairTuneClassifier("vit_tiny_patch16_224", checkpoint_path=DEMO_BACKBONE, model_kwargs=DEMO_MODEL_KWARGS,
                         batch_size=64, max_epochs=3, class_weight="balanced")
objectives = ["min_group_auc", "overall_auc"]
search = FairTuneSearchCV(vit, scoring=objectives, refit="utopia", n_trials=6 if args.quick else 10,
                          baselines=("linear", "attention"), baseline_lrs=None, n_bootstrap=0, random_state=0)
search.fit(X_train, y_train, sensitive_features=s_train)

results = search.cv_results_
states = list(results["state"])
print(f"{len(states)} trials: {states.count('complete')} complete, {states.count('pruned')} pruned by the "
      f"Pareto successive-halving rule; {int(results['n_epochs'].sum())} epochs trained")
print("\nPareto front (validation):")
print(search.pareto_front_.drop(columns=["mask"]).to_string(index=False, float_format="{:.4f}".format))

# The refit rule's pick next to each objective's own best complete trial (ties broken by the
# other objective): what refit="min_group_auc" or refit="overall_auc" would have refit.
complete = np.flatnonzero(np.asarray(results["state"]) == "complete")


def best_on(name):
    other = next(n for n in objectives if n != name)
    order = np.lexsort((-results[f"mean_test_{other}"][complete], -results[f"mean_test_{name}"][complete]))
    return int(complete[order[0]])


for label, row in [("refit='utopia' (refit)", search.best_index_),
                   *((f"best {name}", best_on(name)) for name in objectives)]:
    print(f"{label:<28} trial {results['trial_number'][row]:>2}: "
          + ", ".join(f"{name} {results[f'mean_test_{name}'][row]:.4f}" for name in objectives)
          + f", {int(results['n_trainable_params'][row])} trainable parameters")
print(f"refit mask: {search.best_mask_.describe()}, lr={search.best_params_['lr']:.1e}")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from skfairtune.plotting import plot_hypervolume_history, plot_pareto_front  # noqa: E402

# The hypervolume curve's last point: the area the complete trials dominate above (0.5, 0.5).
hv_ax = plot_hypervolume_history(search, reference_point=[0.5, 0.5])
print(f"hypervolume of the complete trials from (0.5, 0.5): {hv_ax.lines[0].get_ydata()[-1]:.4f}")

proba = search.predict_proba(X_test)[:, 1]
print(f"held-out test: overall AUC {overall_auc(y_test, proba):.4f}, "
      f"min-group AUC {min_group_auc(y_test, proba, sensitive_features=s_test):.4f}")

if args.figures is not None:
    args.figures.mkdir(parents=True, exist_ok=True)
    plot_pareto_front(search).figure.savefig(args.figures / "pareto_front.png", dpi=120)
    hv_ax.figure.savefig(args.figures / "hypervolume.png", dpi=120)
    print(f"figures saved in {args.figures}")
