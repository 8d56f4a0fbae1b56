"""LoRA units: a unit may be frozen, fully trained or LoRA-adapted, and the search can choose.

A ternary mask string has one digit per unit of the mask space (3 per block in
the paper's ``ln-attn-mlp`` space): ``0`` frozen, ``1`` fully trained, ``2``
LoRA-adapted (peft adapters of rank ``lora_rank`` on the unit's linear layers;
LayerNorm units have none, so a ``2`` there means fully trained). The
adapters are merged into the weights at the end of ``fit``, so the fitted
model predicts at the cost of the original one.

The script first fits three fixed configurations of the same blocks (frozen
but the head, MLPs fully trained, MLPs LoRA-adapted) and prints how many
parameters each trains; then it runs ``FairTuneSearchCV(lora_ranks=(4, 8))``
with two objectives, worst-group AUC and ``"n_trainable_params"`` (a cost to
minimise), and prints the Pareto front: the fewest parameters for each level
of worst-group AUC. Needs peft (``pip install -e ".[lora]"``).

Takes about 20 s of CPU time on 2 CPU cores (``--quick``: about 12 s).

Run: ``python examples/lora_units.py [--quick]``
"""

import sys

from sklearn.model_selection import train_test_split

from skfairtune import FairTuneClassifier, FairTuneSearchCV
from skfairtune.datasets import make_biased_images
from skfairtune.demo import DEMO_BACKBONE, DEMO_MODEL_KWARGS
from skfairtune.metrics import min_group_auc

try:
    import peft  # noqa: F401
except ImportError:
    print('Skipping: peft is not installed (pip install -e ".[lora]").')
    sys.exit(0)

quick = "--quick" in sys.argv
data = make_biased_images(400 if quick else 800, image_size=16, random_state=0)
X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
    data.images, data.target, data.sensitive_features, test_size=0.3, random_state=0,
    stratify=data.target.astype(str) + data.sensitive_features["group"].astype(str))
depth = DEMO_MODEL_KWARGS["depth"]


def classifier(**params):
    return FairTuneClassifier("vit_tiny_patch16_224", checkpoint_path=DEMO_BACKBONE,
                              model_kwargs=DEMO_MODEL_KWARGS, batch_size=64, max_epochs=3, lr=1e-3,
                              class_weight="balanced", random_state=0, **params)


# 1. Fixed configurations: the MLPs of the last four blocks frozen, fully trained, LoRA-adapted.
last_four = depth - 4
configurations = {
    "frozen (head only)": "000" * depth,
    "last 4 MLPs full": "000" * last_four + "001" * 4,
    "last 4 MLPs LoRA r=4": "000" * last_four + "002" * 4,
}
print(f"{'configuration':<22}{'trainable':>10}{'of which LoRA':>15}{'test min-group AUC':>20}")
for name, mask in configurations.items():
    clf = classifier(mask=mask, lora_rank=4).fit(X_train, y_train)
    score = min_group_auc(y_test, clf.predict_proba(X_test)[:, 1], sensitive_features=s_test)
    print(f"{name:<22}{clf.n_trainable_params_:>10}{clf.n_lora_params_:>15}{score:>20.4f}")
    if clf.unit_states_ is not None:
        print(f"  units: {clf.unit_states_.describe()}")
        # After fit the adapters are merged: plain nn.Linear layers, no peft module left.
        print(f"  adapters merged: {not any('lora' in n for n, _ in clf.net_.module_.named_modules())}")

# 2. Search frozen / full / LoRA per unit and the rank, for worst-group AUC and few parameters.
search = FairTuneSearchCV(classifier(), lora_ranks=(4, 8), scoring=["min_group_auc", "n_trainable_params"],
                          n_trials=6 if quick else 12, baselines=("linear",), baseline_lrs=None,
                          n_bootstrap=0, random_state=0)
search.fit(X_train, y_train, sensitive_features=s_train)
front = search.pareto_front_.copy()
front["LoRA units"] = front["mask"].str.count("2")
front["full units"] = front["mask"].str.count("1")
print("\nPareto front (validation min-group AUC vs trainable parameters):")
print(front.drop(columns=["mask"]).to_string(index=False, float_format="{:.4g}".format))
print(f"refit (utopia): {search.best_params_}")
