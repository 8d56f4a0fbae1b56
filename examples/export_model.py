"""From search to deployment: save the fair model for plain timm, reload it, export ONNX, write its model card.

Searches a fine-tuning mask on a biased synthetic task (as ``quickstart.py``),
then ships the chosen model:

1. ``search.save_pretrained(folder)``: ``model.safetensors`` + ``config.json``;
2. plain timm loads the folder (``timm.create_model("local-dir:...")``) and
   gives the same probabilities after the same normalisation;
3. ``FairTuneClassifier.from_pretrained(folder)`` rebuilds the fitted estimator;
4. ``export_onnx`` writes an ONNX file (skipped without ``pip install -e ".[onnx]"``);
5. ``model_card`` computes the card (per-group AUC, TPR, FPR with bootstrap
   intervals, AUC gap, EOddsD, DPD, the mask, the search's budget) and saves
   it as the folder's ``README.md``, as the Hugging Face Hub expects.

Takes about 20 s of CPU time on 2 CPU cores (``--quick``: about 10 s).

Run: ``python examples/export_model.py [--quick] [--out FOLDER]``
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from sklearn.model_selection import train_test_split

from skfairtune import FairTuneClassifier, FairTuneSearchCV, model_card
from skfairtune.datasets import make_biased_images
from skfairtune.demo import DEMO_BACKBONE, DEMO_MODEL_KWARGS
from skfairtune.export import export_onnx, model_inputs

quick = "--quick" in sys.argv
out = Path(sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "shipped-model")
data = make_biased_images(300 if quick else 800, image_size=16, random_state=0)
X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
    data.images, data.target, data.sensitive_features, test_size=0.4, random_state=0,
    stratify=data.target.astype(str) + data.sensitive_features["group"].astype(str))

vit = FairTuneClassifier("vit_tiny_patch16_224", checkpoint_path=DEMO_BACKBONE, model_kwargs=DEMO_MODEL_KWARGS,
                         batch_size=64, max_epochs=2 if quick else 5, class_weight="balanced")
search = FairTuneSearchCV(vit, n_trials=3 if quick else 10, baselines=("linear", "attention"),
                          baseline_lrs=(1e-3,), random_state=0)
search.fit(X_train, y_train, sensitive_features=s_train)
print("best mask:", search.best_mask_.describe())

# 1. The folder: timm's state dict and config, plus what skfairtune needs to rebuild the estimator.
folder = search.save_pretrained(out / "model", overwrite=True)
print("saved:", sorted(p.name for p in folder.iterdir()))

# 2. Plain timm, no skfairtune: normalise with the folder's mean and std, then softmax.
plain = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
mean, std = (torch.tensor(plain.pretrained_cfg[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
pixels = torch.from_numpy(model_inputs(search, X_test))  # the classifier's resize and crop, in [0, 1]
with torch.no_grad():
    timm_proba = plain((pixels - mean) / std).softmax(-1).numpy()
expected = search.predict_proba(X_test)
print("plain timm matches:", bool(np.allclose(timm_proba, expected, atol=1e-5)))

# 3. Back to a fitted scikit-learn estimator.
loaded = FairTuneClassifier.from_pretrained(folder)
print("from_pretrained matches:", bool(np.allclose(loaded.predict_proba(X_test), expected, atol=1e-6)))

# 4. ONNX: pixels in [0, 1] to probabilities, any batch size.
if importlib.util.find_spec("onnxscript") and importlib.util.find_spec("onnxruntime"):
    import onnxruntime

    onnx_path = export_onnx(search, out / "model.onnx", overwrite=True)
    (onnx_proba,) = onnxruntime.InferenceSession(str(onnx_path)).run(None, {"pixels": pixels.numpy()})
    print("ONNX matches:", bool(np.allclose(onnx_proba, expected, atol=1e-4)))
else:
    print('ONNX skipped: pip install -e ".[onnx]"')

# 5. The model card, computed on the held-out part; the author fills in the intended use.
card = model_card(search, X_test, y_test, sensitive_features=s_test, n_boot=100 if quick else 500, random_state=0)
print("model card:", card.save(folder, name="README.md"))
fairness = card.json["evaluation"]["fairness"]
print(f"held-out worst-group AUC {fairness['min_group_auc']['value']:.3f}, AUC gap {fairness['auc_gap']['value']:.3f}")
