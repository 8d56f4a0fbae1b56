"""scikit-learn's own estimator checks, run for real on a tiny configuration."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skfairtune import FairTuneSearchCV

from .conftest import tiny_classifier

# An 8 px, one-block ViT: the checks fit dozens of times on 2-D tabular data, which the
# classifier reads as one-pixel-high images when allow_tabular=True (it refuses them otherwise).
_CHECK_VIT = dict(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2)


def _check_classifier():
    return tiny_classifier(max_epochs=2, batch_size=16, lr=3e-3, model_kwargs=dict(_CHECK_VIT), allow_tabular=True)


def _check_search():
    # Accuracy, because the checks use multiclass data and no sensitive features; the mask
    # stays "full" (mask_space=None) because the checks test the API, not what the search finds.
    return FairTuneSearchCV(tiny_classifier(max_epochs=2, batch_size=16, model_kwargs=dict(_CHECK_VIT),
                                            allow_tabular=True),
                            n_trials=1, mask_space=None, lr_range=(2e-3, 4e-3), scoring="accuracy", baselines=None, cv=2,
                            random_state=0)


@parametrize_with_checks([_check_classifier(), _check_search()], expected_failed_checks=lambda est: {})
def test_estimators_pass_sklearn_checks(estimator, check):
    check(estimator)
