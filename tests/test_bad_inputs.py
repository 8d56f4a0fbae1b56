"""Every bad input is refused up front: one table across the public API.

Each row is ``(callable, exception type, message fragment)``. A row passes when
the call raises that exception with that fragment, **before any training**
(no trial starts, no epoch runs) and, for searches, without touching the
stored study they were pointed at: every search row runs against the same
journal file, whose bytes must not change.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold

from skfairtune import FairTuneClassifier, FairTuneSearchCV, fairness_report, get_fairness_scorer
from skfairtune.search._objective import Objective
from skfairtune.search._predictions import FrozenPredictions
from skfairtune._training._template import ModelTemplate
from skfairtune._training._trainer import Trainer
from skfairtune.masks import MaskSpace
from skfairtune.metrics import min_group_auc

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2)


def clf(**overrides):
    params = dict(model="vit_tiny_patch16_224", pretrained=False, model_kwargs=dict(TINY), max_epochs=1,
                  batch_size=32, lr=1e-3, random_state=0)
    params.update(overrides)
    return FairTuneClassifier(**params)


def search(c, estimator=None, **overrides):
    """The table's search, pointed at the shared stored study unless a row says otherwise."""
    params = dict(n_trials=2, baselines=("linear", "full"), pruner="none", random_state=0, refit=False,
                  storage=str(c.journal), study_name="s")
    params.update(overrides)
    return FairTuneSearchCV(estimator or clf(), **params)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """Data, a stored study made by the table's search, and a checkpoint of another architecture."""
    from skfairtune.datasets import make_biased_images

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("bad-inputs")
    data = make_biased_images(120, image_size=16, random_state=0)
    c = SimpleNamespace(X=data.images, y=data.target, s=data.sensitive_features["group"].to_numpy(),
                        journal=folder / "study.log", folder=folder)
    search(c).fit(c.X, c.y, sensitive_features=c.s)
    other = ModelTemplate(clf(model_kwargs=dict(TINY, embed_dim=32)).get_params(), n_classes=2, seed=0).backbone
    c.checkpoint = folder / "wide.pth"
    torch.save(other.state_dict(), c.checkpoint)
    return c


_KEEP = object()


def _fit(c, est=None, X=_KEEP, y=_KEEP, **kwargs):
    """Fit ``est`` (default: the table's search) on the table's data with some part replaced."""
    est = search(c) if est is None else est
    X = c.X if X is _KEEP else X
    y = c.y if y is _KEEP else y
    if isinstance(est, FairTuneSearchCV):
        kwargs.setdefault("sensitive_features", c.s)
    return est.fit(X, y, **kwargs)


def _y3(c):
    return np.arange(len(c.y)) % 3


def _one_class_in_group(c):
    y = c.y.copy()
    y[c.s == c.s[0]] = 1  # group c.s[0] has positives only
    return y


def _pixels(value):
    def make(c):
        X = c.X.astype(np.float32) / 255
        X[3, 2, 2, 0] = value
        return X
    return make


def _nan_labels(c):
    y = c.y.astype(float)
    y[5] = np.nan
    return y


def _nan_groups(c):
    s = c.s.astype(object)
    s[7] = np.nan
    return s


def _frozen(c):
    return FrozenPredictions(np.full((len(c.y), 2), 0.5), classes=[0, 1])


# (id, call, exception, message fragment). The fragments are the part of each message that
# names the parameter or the fix; the messages themselves hold the value too.
CASES = [
    # ---- images: FairTuneClassifier and FairTuneSearchCV
    ("X rank 5", lambda c: _fit(c, clf(), X=c.X[..., None, None]), ValueError, r"X must have 2, 3 or 4 dimensions"),
    ("X rank 1", lambda c: _fit(c, clf(), X=np.zeros(120)), ValueError, r"Expected 2D array, got 1D array"),
    ("X 2 channels", lambda c: _fit(c, clf(), X=np.zeros((120, 16, 16, 2), np.uint8)), ValueError,
     r"cannot tell the channel axis"),
    ("X channels vs in_chans", lambda c: _fit(c, clf(model_kwargs=dict(TINY, in_chans=2)), X=c.X), ValueError,
     r"X has 3 channels but the model expects 2"),
    ("X empty", lambda c: _fit(c, clf(), X=c.X[:0], y=c.y[:0]), ValueError, r"X is empty"),
    ("X None", lambda c: _fit(c, clf(), X=None), ValueError, r"X is None"),
    ("X NaN pixels", lambda c: _fit(c, clf(), X=_pixels(np.nan)(c)), ValueError, r"X contains 1 NaN or infinite"),
    ("X inf pixels (search)", lambda c: _fit(c, X=_pixels(np.inf)(c)), ValueError, r"X contains 1 NaN or infinite"),
    ("X tabular matrix", lambda c: _fit(c, clf(), X=np.zeros((120, 5))), ValueError,
     r"X is a 2-D matrix of shape \(120, 5\).*allow_tabular=True"),
    ("X tabular matrix (search)", lambda c: _fit(c, X=np.zeros((120, 5))), ValueError,
     r"X is a 2-D matrix of shape \(120, 5\)"),
    ("X single path", lambda c: _fit(c, clf(), X="image.png"), TypeError, r"got a single path"),
    ("X count vs y", lambda c: _fit(c, X=c.X[:100]), ValueError, r"X has 100 images but y has 120 labels"),
    # ---- labels
    ("y NaN", lambda c: _fit(c, clf(), y=_nan_labels(c)), ValueError, r"Input y contains NaN"),
    ("y one class", lambda c: _fit(c, clf(), y=np.zeros(120, int)), ValueError, r"y has one class only"),
    ("y continuous", lambda c: _fit(c, clf(), y=np.linspace(0, 1, 120)), ValueError, r"Unknown label type"),
    ("y 2-D", lambda c: _fit(c, clf(), y=np.zeros((120, 2))), ValueError, r"y must be 1-D"),
    ("3 classes, binary scoring", lambda c: _fit(c, y=_y3(c)), ValueError,
     r"scoring='min_group_auc' supports two classes only.*y has 3.*'worst_group_accuracy'"),
    ("3 classes, sklearn binary scoring", lambda c: _fit(c, search(c, scoring="roc_auc"), y=_y3(c)), ValueError,
     r"scoring='roc_auc' supports two classes only.*'roc_auc_ovr'"),
    # ---- sensitive features and groups
    ("sensitive NaN", lambda c: _fit(c, sensitive_features=_nan_groups(c)), ValueError,
     r"sensitive_features.*(NaN|missing)"),
    ("sensitive wrong length", lambda c: _fit(c, sensitive_features=c.s[:-4]), ValueError,
     r"`sensitive_features` has 116 rows but `y` has 120 samples"),
    ("sensitive single group", lambda c: _fit(c, sensitive_features=np.zeros(120)), ValueError,
     r"sensitive_features holds a single group.*overall_auc"),
    ("group with one class in validation", lambda c: _fit(c, y=_one_class_in_group(c)), ValueError,
     r"Per-group AUC is undefined on some validation folds"),
    ("groups wrong length", lambda c: _fit(c, groups=np.arange(50)), ValueError, r"`groups` has 50 entries"),
    ("scoring needs groups", lambda c: _fit(c, sensitive_features=None), ValueError, r"needs group labels"),
    # ---- cv, validation_fraction, subsample
    ("cv=1", lambda c: _fit(c, search(c, cv=1)), ValueError, r"`cv` must be an int >= 2"),
    ("cv not a splitter", lambda c: _fit(c, search(c, cv="three")), ValueError, r"Expected `cv` as an integer"),
    ("cv more folds than samples", lambda c: _fit(c, search(c, cv=KFold(500))), ValueError,
     r"n_splits=500 greater than the number of samples"),
    ("cv split out of range", lambda c: _fit(c, search(c, cv=[(np.arange(100), np.arange(100, 130))])),
     ValueError, r"`cv` split 0 .*index 129.*120 samples"),
    ("cv empty validation", lambda c: _fit(c, search(c, cv=[(np.arange(120), np.array([], int))])),
     ValueError, r"`cv` split 0 has an empty validation part"),
    ("validation_fraction=0", lambda c: _fit(c, search(c, validation_fraction=0.0)), ValueError,
     r"`validation_fraction` must be a number in \(0, 1\)"),
    ("validation_fraction=1", lambda c: _fit(c, search(c, validation_fraction=1)), ValueError,
     r"`validation_fraction` must be a number in \(0, 1\)"),
    ("subsample=0", lambda c: _fit(c, search(c, subsample=0)), ValueError, r"`subsample` must be a number in \(0, 1\]"),
    ("subsample=1.5", lambda c: _fit(c, search(c, subsample=1.5)), ValueError, r"`subsample` must be a number"),
    ("subsample too small", lambda c: _fit(c, search(c, subsample=0.02)), ValueError, r"too small to keep every"),
    # ---- masks, presets, spaces
    ("mask unknown preset", lambda c: _fit(c, clf(mask="everything")), ValueError, r"everything"),
    ("mask wrong length", lambda c: _fit(c, clf(mask="0101")), ValueError, r"0101"),
    ("mask_space unknown", lambda c: _fit(c, clf(mask_space="heads")), ValueError, r"heads"),
    ("search space unknown", lambda c: _fit(c, search(c, mask_space="heads")), ValueError, r"heads"),
    ("baselines unknown preset", lambda c: _fit(c, search(c, baselines=("full", "lora"))), ValueError,
     r"`baselines` contains 'lora'"),
    ("MaskSpace unknown", lambda c: MaskSpace("heads", 12), ValueError, r"heads"),
    # ---- learning rates and distributions
    ("lr_range reversed", lambda c: _fit(c, search(c, lr_range=(1e-3, 1e-5))), ValueError, r"0 < low < high"),
    ("lr_range zero", lambda c: _fit(c, search(c, lr_range=(0, 1e-3))), ValueError, r"0 < low < high"),
    ("lr_range not a pair", lambda c: _fit(c, search(c, lr_range="fast")), ValueError, r"`lr_range` must be"),
    ("baseline_lrs negative", lambda c: _fit(c, search(c, baseline_lrs=(-1e-3,))), ValueError,
     r"`baseline_lrs` must hold positive"),
    ("lr negative", lambda c: _fit(c, clf(lr=-1.0)), ValueError, r"`lr` must be a number > 0"),
    ("param_distributions list", lambda c: _fit(c, search(c, param_distributions=[("weight_decay", 0.1)])),
     TypeError, r"`param_distributions` must be a dict"),
    ("param_distributions not a distribution",
     lambda c: _fit(c, search(c, param_distributions={"weight_decay": (0.0, 0.1)})), TypeError,
     r"param_distributions\['weight_decay'\] must be an optuna"),
    ("param_distributions unknown parameter",
     lambda c: _fit(c, search(c, param_distributions={"wd": FloatDistribution(0, 1)})), ValueError,
     r"param_distributions\['wd'\].*not a parameter of FairTuneClassifier.*weight_decay"),
    ("param_distributions lr twice",
     lambda c: _fit(c, search(c, param_distributions={"lr": FloatDistribution(1e-4, 1e-2)})), ValueError,
     r"param_distributions\['lr'\].*lr_range=None"),
    # ---- samplers, pruners, studies, storages
    ("sampler unknown name", lambda c: _fit(c, search(c, sampler="cmaes")), TypeError,
     r"`sampler` must be None, one of \('tpe', 'independent_tpe', 'random'\) or an optuna sampler; got 'cmaes'"),
    ("sampler is a pruner", lambda c: _fit(c, search(c, sampler=optuna.pruners.NopPruner())), TypeError,
     r"`sampler` must be None, one of .* or an optuna sampler"),
    ("pruner unknown", lambda c: _fit(c, search(c, pruner="median")), ValueError, r"`pruner` must be one of"),
    ("study minimize", lambda c: _fit(c, search(c, storage=None, study_name=None,
                                                 study=optuna.create_study(direction="minimize"))),
     ValueError, r"directions=\['maximize'\]"),
    ("study not a Study", lambda c: _fit(c, search(c, storage=None, study="s")), TypeError,
     r"`study` must be an optuna.Study"),
    ("stored study of another search", lambda c: _fit(c, search(c, scoring="overall_auc")), ValueError,
     r"was made by a different search"),
    ("storage cannot connect", lambda c: _fit(c, search(c, storage="postgresql+psycopg://ann:pw@127.0.0.1:1/s")),
     ValueError, r"could not be opened.*connect_timeout=10 s"),
    ("storage folder missing", lambda c: _fit(c, search(c, storage=str(c.folder / "no" / "s.log"))), ValueError,
     r"does not exist; create it first"),
    # ---- model and weights
    ("checkpoint of another architecture", lambda c: _fit(c, search(c, clf(checkpoint_path=str(c.checkpoint)))),
     ValueError, r"does not fit the VisionTransformer architecture"),
    ("checkpoint missing", lambda c: _fit(c, clf(checkpoint_path=str(c.folder / "none.pth"))), FileNotFoundError,
     r"does not exist"),
    ("estimator not a FairTuneClassifier", lambda c: _fit(c, search(c, estimator=KFold())), TypeError,
     r"`estimator` must be a FairTuneClassifier"),
    # ---- other search parameters
    ("n_jobs=0", lambda c: _fit(c, search(c, n_jobs=0)), ValueError, r"`n_jobs` must be a positive int"),
    ("n_jobs float", lambda c: _fit(c, search(c, n_jobs=1.5)), ValueError, r"`n_jobs` must be a positive int"),
    ("n_trials=0", lambda c: _fit(c, search(c, n_trials=0)), ValueError, r"`n_trials` must be an int >= 1"),
    ("timeout negative", lambda c: _fit(c, search(c, timeout=-1)), ValueError, r"`timeout` must be a number > 0"),
    ("error_score word", lambda c: _fit(c, search(c, error_score="ignore")), ValueError, r"`error_score` must be"),
    ("scoring unknown", lambda c: _fit(c, search(c, scoring="fairness")), ValueError, r"is not a fairness scorer"),
    ("sample_weight", lambda c: _fit(c, sample_weight=np.ones(120)), ValueError,
     r"got sample_weight, which FairTuneClassifier does not support; use .*class_weight"),
    # ---- scorers, metrics, reports
    ("scorer unknown", lambda c: get_fairness_scorer("fairness"), ValueError, r"fairness"),
    ("scorer without groups", lambda c: get_fairness_scorer("min_group_auc")(_frozen(c), c.X, c.y), ValueError,
     r"needs `sensitive_features` at score time"),
    ("metric NaN scores", lambda c: min_group_auc(c.y, np.full(120, np.nan), sensitive_features=c.s), ValueError,
     r"NaN"),
    ("metric groups wrong length", lambda c: min_group_auc(c.y, np.full(120, 0.5), sensitive_features=c.s[:60]),
     ValueError, r"sensitive_features"),
    ("metric multiclass", lambda c: min_group_auc(_y3(c), np.full(120, 0.5), sensitive_features=c.s), ValueError,
     r"binary"),
    ("report of an unfitted model", lambda c: fairness_report(clf(), c.X, c.y, sensitive_features=c.s),
     NotFittedError, r"this FairTuneClassifier instance is not fitted yet"),
]


def _snapshot(path: Path):
    """Everything a stored study holds that a refused search could have changed.

    Not the file's bytes: opening a journal study appends a (rejected) "create"
    record, Optuna's way of loading an existing study.
    """
    from skfairtune.distributed._study import make_storage

    study = optuna.load_study(study_name="s", storage=make_storage(str(path)))
    trials = [(t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs, t.intermediate_values)
              for t in study.get_trials(deepcopy=False)]
    return study.directions, study.user_attrs, trials


@pytest.mark.parametrize("call, error, match", [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_bad_input_is_refused_before_training(ctx, monkeypatch, call, error, match):
    started = []
    train = Trainer.step
    objective = Objective.__call__

    def record_training(self, *args, **kwargs):
        started.append("epoch")
        return train(self, *args, **kwargs)

    def record_trial(self, trial):
        started.append("trial")
        return objective(self, trial)

    monkeypatch.setattr(Trainer, "step", record_training)
    monkeypatch.setattr(Objective, "__call__", record_trial)
    before = _snapshot(ctx.journal)
    with pytest.raises(error, match=match):
        call(ctx)
    assert started == [], "training started before the input was refused"
    assert _snapshot(ctx.journal) == before, "the stored study was changed"


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({row[0] for row in CASES}) == len(CASES)
