"""FairTuneSearchCV: Optuna TPE with successive halving over mask bits and learning rate."""

from __future__ import annotations

import logging
import numbers
import time
import warnings

import numpy as np
import optuna
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing

from .._training._template import ModelTemplate, TemplateStore
from .._training._trainer import resolve_seed
from .._utils._params import validate_params
from ..distributed._credentials import forget_password, pickle_safe_storage, redact_url
from ..distributed._engines import check_engine_storage
from ..distributed._follow import (
    optuna_verbosity,
)
from ..distributed._run import counted_trials
from ..distributed._study import pickle_safe_study
from ..masks import MaskSpace
from ..masks._lora import lora_states
from ._baselines import preset_distribution
from ._fitted import FittedSearchMixin
from ._multiobjective import (
    Scoring,
    resolve_search_scoring,
)
from ._objective import Objective, index_fit_params
from ._pruners import pareto_pruner
from ._results import warn_about_fit_failures
from ._setup import (
    SEARCH_PARAMETER_CONSTRAINTS,
    FitData,
    check_fit_data,
    check_interacting_params,
    classifier_step_of,
    search_images,
    search_splits,
    searched_space,
)
from ._space import SearchSpace
from ._steps import SearchStepsMixin

__all__ = ["FairTuneSearchCV", "BASELINES"]

#: The paper's baselines, each a special case of the mask (Table 1).
BASELINES = ("full", "linear", "attention", "layernorm")
logger = logging.getLogger("skfairtune")


class FairTuneSearchCV(SearchStepsMixin, FittedSearchMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Search which parts of a ViT to fine-tune, and the learning rate, for fairness.

    FairTune's outer loop (Dutt et al., ICLR 2024, Algorithm 1): Optuna's TPE
    proposes a binary mask over the ViT's units and a learning rate; each trial
    fine-tunes a :class:`FairTuneClassifier` with that mask on the training part
    of every fold (folds train in lockstep), and after **every** epoch reports
    the mean validation score to the pruner (successive halving by default),
    which stops unpromising trials there. The best trial is refit on all data.

    Parameters
    ----------
    estimator : FairTuneClassifier or Pipeline ending in one
        The template; the searched parameters are set on the final step.
    mask_space : str, MaskSpace or None, default="ln-attn-mlp"
        Mask space searched (the same setting as ``FairTuneClassifier``'s
        ``mask_space``): a name resolved for the model's own blocks (ViT,
        DeiT, BEiT, EVA, Swin), or a :class:`skfairtune.masks.MaskSpace` such as
        ``MaskSpace.from_patterns(model, {...})``; ``None`` keeps the
        estimator's own ``mask`` and searches the rest only.
    lr_range : (float, float) or None, default=(1e-5, 1e-2)
        Log-uniform range of the learning rate; ``None`` keeps the
        estimator's ``lr``. Wider than the paper's (1e-5, 1e-3): sparse masks
        and presets (attention, LayerNorm, linear readout) train best at
        1e-3 to 1e-2 on small ViTs (see ``docs/science.md``).
    lora_ranks : sequence of int or None, default=None
        Make the space ternary: each attention or MLP unit is frozen, fully
        trained or LoRA-adapted (``pip install skfairtune[lora]``), and the
        rank is searched among these values. None searches binary masks.
    param_distributions : dict of str to optuna distribution, default=None
        Extra estimator parameters to search, e.g.
        ``{"weight_decay": optuna.distributions.FloatDistribution(1e-3, 0.1, log=True)}``.
    n_trials : int, default=60
        Trials in the study, **the baseline trials included**, counting trials
        that earlier runs of the same stored study finished (so a resumed
        search runs only what is missing). With the defaults: 16 baseline
        trials (4 presets x 4 learning rates), then ``n_startup_trials``
        random masks, then 34 masks proposed by TPE; the paper ran 60 trials
        on HAM10000. ``fit`` logs this split, and warns when the budget leaves
        no searched mask.
    n_startup_trials : int, default=10
        Random masks drawn after the baseline trials, before TPE takes over
        (named samplers only; a sampler you pass is used as given). Optuna
        counts the baselines toward its own start-up, which would otherwise
        leave no random mask at all.
    scoring : str, callable, list or dict, default="min_group_auc"
        Validation objective, higher is better: a name from
        :func:`skfairtune.scorers.get_fairness_scorer_names`, a scikit-learn
        scorer name, or a scorer callable. A list (or a dict of name to name
        or callable) makes the search multi-objective: Optuna's
        multi-objective TPE by default, ``"n_trainable_params"`` as a cost to
        minimise, Pareto successive halving, ``pareto_front_`` (see
        ``docs/beyond.md``).
    cv : None, int, splitter or iterable, default=None
        ``None``: one split stratified on label x group, holding out
        ``validation_fraction`` (the paper's protocol). An int ``k``: k folds
        stratified the same way, trained in lockstep, their mean score
        reported each epoch (more robust, k times the cost). Any sklearn
        splitter; ``groups`` passed to ``fit`` reach it.
    validation_fraction : float, default=0.2
        Held-out share when ``cv=None``.
    fold_scoring : {"pooled", "mean"}, default="pooled"
        With several folds, ``"pooled"`` scores the out-of-fold predictions of
        all folds together (every validation image counts once, and a
        worst-group AUC over the whole training set is far less noisy than the
        mean of per-fold minima); ``"mean"`` averages per-fold scores, as
        scikit-learn's searches do. Irrelevant with one split.
    n_bootstrap : int, default=200
        Paired bootstrap replicates of each complete trial's validation score
        (resampled within label x group cells, the same resamples for every
        trial). Their standard deviation is
        ``cv_results_["bootstrap_std_test_score"]`` and their 2.5/97.5
        percentiles ``ci_low_test_score`` / ``ci_high_test_score``;
        ``selection="one_se"`` uses them. 0 turns the bootstrap off (those
        columns are then NaN). ``std_test_score`` keeps scikit-learn's
        meaning: the spread of the split scores (0 with one split).
    selection : {"best", "one_se", "reeval"}, default="best"
        How the final trial is chosen among the complete ones. ``"best"``:
        the best validation score (the paper). ``"one_se"``: among trials
        within one standard error of the best, the one with the fewest
        trainable parameters; the standard error is that of the paired
        difference to the best trial, over the bootstrap replicates (so it
        needs ``n_bootstrap >= 2``). ``"reeval"``: the ``reeval_top_k`` best
        trials are trained again on ``reeval_repeats`` fresh splits with fresh
        seeds, and the one with the best mean of these fresh scores wins (the
        search score, inflated by the selection itself, is left out); a
        ``UserWarning`` says when ``cv`` gives the same splits for every seed.
        See ``docs/science.md`` for what each did on held-out patients.
    reeval_top_k : int, default=3
        Trials re-evaluated by ``selection="reeval"``.
    reeval_repeats : int, default=2
        Fresh splits (each with its own training seed) per re-evaluated trial.
        The splits are fresh when ``cv`` is None or an int; a splitter with a
        fixed ``random_state`` or an iterable of splits gives the same splits
        again, and only the training seed changes.
    baselines : sequence of str or None, default=("full", "linear", "attention", "layernorm")
        Masks enqueued as the first trials, so they are compared under the
        same budget: presets, trained with the public FairTune code's
        definitions (``"full"`` trains every parameter; see
        :data:`skfairtune.masks.PRESET_DESCRIPTIONS`), or bit strings of the
        searched space.
    baseline_lrs : "auto", sequence of float or None, default="auto"
        Learning rates each baseline is enqueued with (one trial per rate), so
        baselines are lr-tuned on the same objective, as in the paper.
        ``"auto"``: one rate per decade of ``lr_range``, its ends included
        (1e-5, 1e-4, 1e-3 and 1e-2 by default). ``None``: one trial per
        baseline with a sampled rate.
    pruner : {"successive_halving", "late_successive_halving", "hyperband", "none"} or optuna pruner, \
default="successive_halving"
        Early stopping of trials; epochs are the resource. Successive halving
        uses the paper's reduction factor 4; its first rung (and Hyperband's
        minimum resource) is the first epoch after the learning-rate warm-up
        (``ceil(warmup_fraction * max_epochs)``), not Optuna's ``"auto"`` (epoch 1,
        when every trial is still judged by its initialisation).
        ``"late_successive_halving"`` puts the first rung at half of training;
        ``"none"`` judges only fully trained trials. With several
        objectives, ``"successive_halving"`` stops a trial dominated by a
        share of those at its rung (:class:`skfairtune.ParetoSuccessiveHalving`).
    prune_baselines : bool, default=True
        Whether baseline trials may be pruned. ``False``: they still report
        every epoch and compete at every rung, but always train to the end,
        so every baseline is compared fully trained (as the science
        benchmark does).
    sampler : {"tpe", "independent_tpe", "random"}, optuna sampler or None, default=None
        ``None`` or ``"tpe"``: Optuna's multivariate TPE with ``group=True``
        and the constant liar, its random start-up extended past the
        baselines (``n_startup_trials``); ``"independent_tpe"``: one model
        per parameter (the paper's Optuna 3 TPE); ``"random"``: random masks.
        A named sampler is seeded from ``random_state`` (re-seeded per
        trial slot, so draws do not depend on which worker runs a trial). A
        sampler you pass is used as given: ``random_state`` never re-seeds it
        (seed it yourself, e.g. ``RandomSampler(seed=1)``; with ``n_jobs > 1``
        each worker process re-seeds its copy at random so that the workers
        do not all propose the same parameters). Any Optuna sampler works;
        the parameters are named ``mask__<unit>`` (see
        ``MaskSpace.sample_names``) and ``lr``; a preset baseline trial has
        no bits, only ``baseline`` (its preset's name) and ``lr``. A sampler that asks the study
        to stop (``GridSampler`` once its grid is exhausted) ends the search
        after the running trial, as in ``Study.optimize``.
    study : optuna.Study, default=None
        Use this study (directions "maximize" per score, "minimize" per cost);
        its sampler is used as given, like a ``sampler`` you pass.
    storage : str, optuna storage or None, default=None
        ``None`` keeps the study in memory; a file path stores it in an Optuna
        journal file (``.db``/``.sqlite``: SQLite); a database URL uses Optuna's
        RDB storage. With ``study_name`` an interrupted search resumes (also
        after SIGTERM, which re-queues the running trial and exits with code
        143). A database that restarts is waited for (300 s by default). A
        password in the URL is never pickled nor cloned; ``${VAR}`` in the URL
        is read from the environment when the storage opens. See
        docs/long-searches.md.
    study_name : str, default=None
        Name of the stored study to create or resume. Open it later with
        ``optuna.load_study`` (see docs/following.md).
    resume : {"check", "force"}, default="check"
        How a stored study is resumed. ``"check"``: the search space, the
        scoring (by qualified name, so a function scorer resumes in a new
        process), the epochs, the folds and a fingerprint of the data (shape
        of ``X``, digests of ``y``, ``sensitive_features`` and ``groups``)
        must match what the study was created with, else ``fit`` raises a
        ``ValueError`` before any training. ``"force"``: a different data
        fingerprint only warns (e.g. after fixing a label); every other
        mismatch still raises.
    space : str, MaskSpace or None, default="deprecated"
        Deprecated name of ``mask_space`` (one name per concept: the
        classifier calls it ``mask_space``); still accepted with a
        ``FutureWarning``.
    subsample : float, default=None
        Run the search on a label- and group-stratified fraction of the data,
        then refit on all of it (the paper's CheXpert protocol).
    refit : bool, str or callable, default=True
        Refit the best parameters on all of ``X`` as ``best_estimator_``. With
        several objectives: ``"utopia"`` (or True) the trial nearest the
        per-objective best after min-max scaling, an objective's name, or a
        callable ``cv_results_ -> index`` as in scikit-learn.
    error_score : "raise" or float, default=np.nan
        Score of a trial whose fit fails (e.g. the loss becomes NaN), as in
        scikit-learn: ``cv_results_`` shows it on every split of that trial,
        and a ``FitFailedWarning`` after the search counts the failures (a
        ``ValueError`` when every trial failed). The study records the trial
        as failed whatever the number, so the sampler never learns from
        ``error_score`` as if it were a result. ``"raise"`` stops the search
        with the error.
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    n_jobs : int, default=1
        Worker processes (not threads) running trials at once, sharing one
        study through file-backed storage.
    random_state : int, RandomState instance or None, default=None
        Seeds the default sampler (not one passed as ``sampler``), the splits
        and every trial's training. A ``numpy.random.RandomState`` gives one
        int seed per ``fit`` (``randint(2**31 - 1)``, as
        ``FairTuneClassifier`` draws its own): a fresh ``RandomState(0)``
        reproduces a search; fitting again with the same instance draws a new
        seed, as scikit-learn's estimators do.
    verbose : int, default=0
        0: the library logs to ``logging.getLogger("skfairtune")`` only (one
        INFO line per trial: number, state, value, epochs, seconds, mask, lr),
        shown wherever the application's logging sends it. 1: also show those
        lines on stderr when the application configured no logging. 2: also
        Optuna's own log. The epoch table of each trial is the estimator's
        ``verbose``.
    progress_bar : {"auto", True, False}, default="auto"
        A tqdm bar over the trials on stderr (done/total, pruned, failed, best
        so far, elapsed, ETA); ``"auto"`` shows it when stderr is a terminal.
    callbacks : list of callable, default=None
        Optuna study callbacks ``callback(study, frozen_trial)``, called once
        after every trial that finishes during ``fit``, always in the process
        that called ``fit`` (with ``n_jobs > 1`` it follows the worker
        processes' shared study), e.g. ``optuna.study.MaxTrialsCallback`` or
        an MLflow logger (``examples/mlflow_callback.py``). ``study.stop()``
        from a callback ends the search after the running trial when
        ``n_jobs=1``; with worker processes it is ignored with a warning.

    Attributes
    ----------
    best_params_ : dict
        ``{"mask": bit string, "lr": float, ...}`` of the best complete trial.
    best_mask_ : skfairtune.masks.Mask
        The best mask, readable (``best_mask_.describe()``).
    best_score_ : float
        Its validation score, of the kind ``best_score_source_`` names: the
        search score (last epoch) for ``"best"`` and ``"one_se"``; the mean of
        the fresh re-evaluation scores for ``"reeval"`` (its search score
        stays in ``cv_results_``). With several objectives only when
        ``refit`` names one (scikit-learn's rule).
    best_score_source_ : {"search", "reeval"}
        Where ``best_score_`` comes from: ``"search"`` (the trial's
        ``cv_results_["mean_test_score"]``) or ``"reeval"`` (the mean of its
        fresh evaluations in ``reeval_scores_``).
    best_index_ : int
        Its row in ``cv_results_`` (the trial ``selection`` chose).
    reeval_scores_ : dict of int to list of float
        With ``selection="reeval"``: every evaluation of each re-evaluated
        row of ``cv_results_``: the search's own score first, then the
        ``reeval_repeats`` fresh ones (``values[1:]``, the only ones that rank
        the rows).
    mask_space_ : skfairtune.masks.MaskSpace or None
        The searched mask space, resolved for the backbone's depth.
    best_estimator_ : estimator
        Refit on all data with the best parameters (when ``refit``).
    cv_results_ : dict of ndarray
        One row per trial in scikit-learn's layout (``*_fit_time``,
        ``*_score_time``, ``params``, ``split<k>_test_score``, ``std_test_score``
        over splits, ``rank_test_score`` with ties at the smallest rank; per
        objective ``<name>`` with several), plus ``state``, ``n_epochs``,
        ``n_trainable_params``, ``trial_number``, ``baseline``, ``fail_reason``
        and the bootstrap (``bootstrap_std_test_score``, ``ci_low_test_score``,
        ``ci_high_test_score``). Pruned trials rank after finished ones.
    refit_time_ : float
        Seconds spent refitting the chosen trial on all data (when ``refit``).
    study_ : optuna.Study
        The study, with every trial.
    n_trials_ : int
        Trials in ``cv_results_``.
    n_splits_ : int
        Validation folds.
    scorer_ : callable or dict
        The resolved scorer (a dict by name with several objectives).
    pareto_front_ : pandas.DataFrame
        With several objectives: the non-dominated complete trials, their
        parameters and values (``cv_results_`` then has ``mean_test_<name>``,
        ``rank_test_<name>`` and ``pareto_rank``).
    classes_ : ndarray
        Class labels.

    Examples
    --------
    >>> from skfairtune import FairTuneClassifier, FairTuneSearchCV
    >>> from skfairtune.datasets import make_biased_images
    >>> data = make_biased_images(300, image_size=16, random_state=0)
    >>> clf = FairTuneClassifier(
    ...     "vit_tiny_patch16_224", pretrained=False, max_epochs=2, batch_size=64,
    ...     model_kwargs=dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2))
    >>> search = FairTuneSearchCV(clf, n_trials=3, baselines=("linear",), baseline_lrs=(1e-3,), random_state=0)
    >>> search = search.fit(data.images, data.target,
    ...                     sensitive_features=data.sensitive_features)
    >>> sorted(search.best_params_)
    ['lr', 'mask']
    >>> len(search.cv_results_["params"])
    3
    """

    __metadata_request__fit = {"sensitive_features": True, "groups": True}

    _parameter_constraints: dict = SEARCH_PARAMETER_CONSTRAINTS

    def __init__(
        self,
        estimator,
        *,
        mask_space="ln-attn-mlp",
        lr_range=(1e-5, 1e-2),
        lora_ranks=None,
        param_distributions=None,
        n_trials=60,
        n_startup_trials=10,
        scoring="min_group_auc",
        cv=None,
        validation_fraction=0.2,
        fold_scoring="pooled",
        n_bootstrap=200,
        selection="best",
        reeval_top_k=3,
        reeval_repeats=2,
        baselines=BASELINES,
        baseline_lrs="auto",
        pruner="successive_halving",
        prune_baselines=True,
        sampler=None,
        study=None,
        storage=None,
        study_name=None,
        subsample=None,
        refit=True,
        error_score=np.nan,
        timeout=None,
        n_jobs=1,
        random_state=None,
        verbose=0,
        progress_bar="auto",
        callbacks=None,
        resume="check",
        space="deprecated",
    ):
        self.estimator = estimator
        self.mask_space = mask_space
        self.space = space
        self.lr_range = lr_range
        self.lora_ranks = lora_ranks
        self.param_distributions = param_distributions
        self.n_trials = n_trials
        self.n_startup_trials = n_startup_trials
        self.scoring = scoring
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.fold_scoring = fold_scoring
        self.n_bootstrap = n_bootstrap
        self.selection = selection
        self.reeval_top_k = reeval_top_k
        self.reeval_repeats = reeval_repeats
        self.baselines = baselines
        self.baseline_lrs = baseline_lrs
        self.pruner = pruner
        self.prune_baselines = prune_baselines
        self.sampler = sampler
        self.study = study
        self.storage = storage
        self.study_name = study_name
        self.subsample = subsample
        self.refit = refit
        self.error_score = error_score
        self.timeout = timeout
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.progress_bar = progress_bar
        self.callbacks = callbacks
        self.resume = resume

    def __repr__(self, N_CHAR_MAX=700):
        text = super().__repr__(N_CHAR_MAX)
        return redact_url(text) if self.storage is not None else text

    def __getstate__(self):
        # A pickle never carries a database password: the URL is redacted and a database
        # study becomes an in-memory copy (see skfairtune.distributed._credentials).
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        state["storage"] = pickle_safe_storage(state.get("storage"))
        for name in ("study", "study_"):
            if isinstance(state.get(name), optuna.Study):
                state[name] = pickle_safe_study(state[name])
        return state

    def __sklearn_clone__(self):
        # Clones (e.g. cross_validate's) keep a redacted URL; this process remembers the password.
        cloned = super().__sklearn_clone__()
        cloned.storage = forget_password(cloned.storage)
        return cloned

    # ---------------------------------------------------------------- set-up
    def _classifier_step(self):
        """(step name or None, the FairTuneClassifier)."""
        return classifier_step_of(self.estimator)

    def _resolve_scoring(self) -> Scoring:
        return resolve_search_scoring(self.scoring)

    def _validate_params(self):
        """Check every parameter against ``_parameter_constraints``, then the pairs that interact."""
        validate_params(self)
        check_interacting_params(self, self._resolve_scoring())

    def _seed(self) -> int | None:
        """The int seed of this fit: ``random_state`` itself, or drawn once per fit from a RandomState."""
        if self.random_state is None or isinstance(self.random_state, numbers.Integral):
            return None if self.random_state is None else int(self.random_state)
        return self._random_seed

    # ---------------------------------------------------------------- fit
    def fit(self, X, y, *, sensitive_features=None, groups=None, **fit_params) -> FairTuneSearchCV:
        """Run the search, then refit the best mask and learning rate on all data.

        Parameters
        ----------
        X : array-like, tensor, list of PIL images or list of file paths
            Images.
        y : array-like of shape (n_samples,)
            Labels.
        sensitive_features : array-like, Series or DataFrame, default=None
            Group membership per image (several columns: intersectional
            groups). Required by group-aware scorings; also stratifies the
            default validation split.
        groups : array-like, default=None
            Grouping for the splitter (e.g. lesion or patient ids) so that
            one patient never sits on both sides of a split.
        **fit_params : dict
            Routed to the estimator's ``fit`` as scikit-learn's searches do:
            with metadata routing off all of them (a Pipeline's as
            ``<step>__<name>``; its steps before the classifier get them in
            every trial, indexed to each fold), with it on what the estimator
            requested. ``FairTuneClassifier.fit`` takes none but refuses
            ``sample_weight`` (use ``class_weight``).

        Returns
        -------
        self : FairTuneSearchCV
            The fitted search.
        """
        self._validate_params()
        # A RandomState gives one int per fit (sklearn's rule: a second fit draws another).
        self._random_seed = None if self.random_state is None else resolve_seed(self.random_state)
        # joblib.parallel_config may send the workers to a cluster: its storage rules hold before any work.
        check_engine_storage(self.storage, self.n_jobs, study=self.study)
        scoring = self._resolve_scoring()
        self.scorer_ = scoring.scorer_attribute()
        data = check_fit_data(self, X, y, sensitive_features, groups, fit_params, scoring,
                              seed=self._seed())
        self.classes_ = data.classes
        classifier = self._trial_classifier(data)
        template = self._build_template(classifier, data)
        search_idx, splits = search_splits(self, data, scoring)
        self.n_splits_ = len(splits)
        objective = self._make_objective(classifier, template, data, search_idx, splits, scoring)
        queued = self._baseline_queue(objective.space)
        self._open_study(objective, data, splits, scoring, n_baseline_trials=min(len(queued), self.n_trials))
        self._enqueue_baselines(queued)
        with optuna_verbosity(self.verbose):
            self.interrupted_ = self._optimize(objective)
        warn_about_fit_failures([t for t in counted_trials(self.study_) if t.state.is_finished()],
                                self.error_score)
        self._collect_results(objective.space, scoring)
        if self.selection == "reeval" and not self.interrupted_:
            self._reevaluate(objective, data, search_idx)
        if self.refit:
            self._refit(data.X, data.y, data.prefix, data.fit_params)
        return self

    # ---------------------------------------------------------------- the steps of fit
    def _trial_classifier(self, data: FitData):
        """The estimator every trial clones: the searched space and, when seeded, the seed set."""
        estimator = clone(self.estimator).set_params(**self._space_params(data.prefix))
        if data.seed is not None:
            # Common random numbers: every trial trains with the same seed, so masks are
            # compared on equal footing (same head init, same batch order).
            estimator.set_params(**{data.prefix + "random_state": data.seed})
        return estimator

    def _build_template(self, estimator, data: FitData) -> ModelTemplate:
        """Build the model once: bad model, mask or weights fail here, before any training.

        The trials copy this template (weights loaded once); its input size lets
        the images be decoded and resized once for all trials.
        """
        classifier = estimator[-1] if data.step else estimator
        params = classifier.get_params(deep=False)
        template = ModelTemplate(params, n_classes=len(self.classes_), seed=resolve_seed(params["random_state"]))
        user = self._classifier_step()[1]
        space = MaskSpace.from_model(user.mask_space, template.backbone)
        if lora_states(user.mask, space) is None:  # a ternary mask (LoRA units) is checked as states
            space.resolve(user.mask)
        return template

    def _pooled(self, splits) -> bool:
        return self.fold_scoring == "pooled" and len(splits) > 1

    def _make_objective(self, estimator, template: ModelTemplate, data: FitData, search_idx, splits, scoring):
        classifier = estimator[-1] if data.step else estimator
        images = search_images(classifier, template, data)
        templates = TemplateStore()
        templates.add(template)
        searched = searched_space(self) is not None
        space = SearchSpace(template.mask_space if searched else None,
                            tuple(self.lr_range) if self.lr_range is not None else None,
                            dict(self.param_distributions or {}),
                            tuple(self.lora_ranks) if self.lora_ranks else None,
                            presets=preset_distribution(self.baselines) if searched else None)
        return Objective(
            estimator=estimator, step=data.step, space=space,
            # Without subsample no copy: a memory-mapped cache stays on disk.
            X=None if images is None else (images if self.subsample is None else images[search_idx]),
            X_original=None if not data.step else _safe_indexing(data.X, search_idx),
            y=data.y[search_idx],
            sensitive_features=(None if data.sensitive_features is None
                                else _safe_indexing(data.sensitive_features, search_idx)),
            splits=splits, scorer=scoring.scorers[0], error_score=self.error_score,
            max_epochs=classifier.max_epochs, verbose=self.verbose, fold_scoring=self.fold_scoring,
            g_codes=data.g_codes[search_idx], n_bootstrap=self.n_bootstrap,
            # The same resamples for every trial make the bootstrap paired.
            bootstrap_seed=0 if data.seed is None else data.seed, templates=templates,
            objectives=dict(zip(scoring.names, scoring.scorers)) if scoring.multi else None,
            pareto_pruner=pareto_pruner(self.pruner, scoring, classifier),
            prune_baselines=self.prune_baselines,
            head_fit_params=index_fit_params(data.head_fit_params or {}, search_idx, len(data.y)),
        )

    def _space_params(self, prefix: str) -> dict:
        space = searched_space(self)
        return {} if space is None else {prefix + "mask_space": space}

    def _refit(self, X, y, prefix, fit_params=None):
        estimator = clone(self.estimator).set_params(**self._space_params(prefix))
        estimator.set_params(**{prefix + k: v for k, v in self.best_params_.items() if k != "random_state"})
        if self.random_state is not None:
            estimator.set_params(**{prefix + "random_state": self._seed()})
        started = time.perf_counter()
        self.best_estimator_ = estimator.fit(X, y, **(fit_params or {}))
        self.refit_time_ = time.perf_counter() - started
        # skorch ends training quietly on Ctrl-C (and on a callback's stop): say so, rather than
        # hand back an under-trained model as if it were the refit.
        step = self.best_estimator_[-1] if isinstance(self.best_estimator_, Pipeline) else self.best_estimator_
        trained, planned = len(step.history_), step.max_epochs
        if trained < planned:
            warnings.warn(
                f"the refit stopped after {trained} of {planned} epochs (Ctrl-C, or a callback such as "
                "EarlyStopping): best_estimator_ is trained for fewer epochs than the trials were scored "
                "at. If it was interrupted, call fit again: a stored study that is complete runs no trial, "
                "only the refit.", UserWarning, stacklevel=3,
            )
