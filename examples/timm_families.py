"""Every timm transformer: mask spaces read from the model, and a space of your own.

Shows that FairTune is not tied to the plain ViT layout. The mask space is read
from the model's own module names, so a hierarchical Swin gets one unit per
stage and block (``s0.b1.attn``), and an EVA-02 (rotary embeddings, SwiGLU) the
familiar ``blocks.i`` units. A search then runs over the Swin exactly as over a
ViT. Finally ``MaskSpace.from_patterns`` builds a space from regular
expressions over parameter names, for a model (or a unit split) no preset
knows, and fails with a message listing names when a pattern matches nothing.

The models are tiny and randomly initialised (timm builds any architecture
offline); with real weights pass ``checkpoint_path=...``.

Takes about 7 s of CPU time on 2 CPU cores (``--quick``: about 5 s).

Run: ``python examples/timm_families.py [--quick]``
"""

import sys

import timm

from skfairtune import FairTuneClassifier, FairTuneSearchCV, MaskSpace
from skfairtune.datasets import make_biased_images

QUICK = "--quick" in sys.argv[1:]


def tiny_swin(num_classes=2):
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=num_classes,
                             img_size=32, patch_size=4, embed_dim=16, depths=(2, 1), num_heads=(2, 2),
                             window_size=4)


def tiny_eva(num_classes=2):
    return timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=num_classes,
                             img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2)


# 1. Spaces read from the model: units per stage and block for Swin, per block for EVA.
for name, build in (("Swin", tiny_swin), ("EVA-02", tiny_eva)):
    space = MaskSpace.from_model("ln-attn-mlp", build())
    print(f"{name}: {space!r}, {space.n_bits} units, e.g. {space.units[:3]}; "
          f"frozen-prefix cache: {space.prefix_cache_reason or 'available'}")

# 2. A search over the Swin, as over any ViT.
data = make_biased_images(96 if QUICK else 240, image_size=32, random_state=0)
swin = FairTuneClassifier(model=tiny_swin, pretrained=False, max_epochs=1 if QUICK else 3, batch_size=32,
                          lr=1e-3, random_state=0)
search = FairTuneSearchCV(swin, n_trials=3 if QUICK else 8, baselines=("linear", "attention"),
                          baseline_lrs=None, n_bootstrap=0, refit=False, random_state=0)
search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
print(f"Swin search: best validation min-group AUC {search.best_score_:.3f} with mask "
      f"{search.best_params_['mask']} ({search.mask_space_.n_bits} units)")

# 3. A space from name patterns: attention and MLP of every block, one group = the block index.
patterns = {"attn": r"blocks\.(\d+)\.attn\.", "mlp": r"blocks\.(\d+)\.mlp\."}
space = MaskSpace.from_patterns(tiny_eva(), patterns)
print(f"from_patterns: {space.units}")
clf = FairTuneClassifier(model=tiny_eva, pretrained=False, mask_space=space, mask="0101", max_epochs=1,
                         batch_size=32, random_state=0).fit(data.images, data.target)
print(f"EVA-02 with mask 0101 trains {clf.n_trainable_params_} of {clf.n_params_} parameters")
try:
    MaskSpace.from_patterns(tiny_eva(), {"attn": r"layers\.(\d+)\.attention\."})
except ValueError as error:
    print(f"a pattern that matches nothing: {str(error)[:110]}...")
