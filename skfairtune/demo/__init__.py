"""``skfairtune demo``: the FairTune story end to end, offline, in a few minutes.

1. data: a biased image task (:func:`skfairtune.datasets.make_biased_images`,
   or HAM10000 with ``--data ham10000 --root PATH``), split into a training
   part and a held-out test part, stratified on label x group;
2. backbone: a small ViT pre-trained on a *different* task
   (:func:`~skfairtune.datasets.make_pretraining_images`), shipped with the
   package (made by ``scripts/make_demo_backbone.py``) and loaded through
   ``checkpoint_path`` like any user checkpoint;
3. :func:`skfairtune.compare_methods`: the paper's baselines (full fine-tuning
   = ERM, linear readout, attention and LayerNorm tuning, as the public
   FairTune code defines them), each with its learning rate tuned on the same
   fairness objective and validation folds, and
   :class:`~skfairtune.FairTuneSearchCV` over the mask and the learning rate,
   its study starting from the tuned baselines' trials (copied, not
   retrained), so that FairTune keeps a baseline when no new mask beats it on
   validation;
4. every method refit on the whole training part and scored on the held-out
   part: one table with paired-bootstrap 95 % intervals of each method's
   worst-group AUC difference to FairTune, saying which differences are noise;
5. a CSV/JSON copy of the table and the figures in ``--out``.
"""

from ._run import (
    DEMO_BACKBONE,
    DEMO_MODEL_KWARGS,
    configure_parser,
    pretrain_backbone,
    run,
)

__all__ = ["configure_parser", "run", "pretrain_backbone", "DEMO_BACKBONE", "DEMO_MODEL_KWARGS"]
