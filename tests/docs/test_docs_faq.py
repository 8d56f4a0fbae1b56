"""Every error message that docs/faq.md shows is what the code says today.

Each FAQ section names a message in its heading and, for most, shows it whole in a
```text block. :data:`REPRODUCE` triggers each one; the test compares the shown text with
the raised one, whitespace and line breaks aside, ``<...>`` and ``...`` matching anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ..conftest import tiny_classifier

FAQ = Path(__file__).resolve().parents[2] / "docs" / "faq.md"
TINY = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2)


def sections() -> dict[str, tuple[str, str | None]]:
    """Heading's message -> (that message, the ```text block's message or None) for each FAQ entry."""
    found = {}
    for part in re.split(r"^### ", FAQ.read_text(), flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        shown = re.search(r"```text\n(.*?)```", body.split("\n### ")[0], re.S)
        spans = re.findall(r"`` (.*?) ``|`([^`]+)`", heading)
        if spans or shown:  # a section about a message, not about a result
            message = next((a or b for a, b in spans), heading)
            found[message] = (message, shown.group(1) if shown else None)
    return found


def as_pattern(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"^[\w.]*\.(?=\w+Error: )", "", text)  # the class's module path, as a traceback prints it
    pieces = re.split(r"<[^<>]*>|\.\.\.|\{\.\.\.\}", text)
    return ".*?".join(r"\s+".join(re.escape(word) for word in piece.split()) for piece in pieces)


def raised(action) -> str:
    with pytest.raises(Exception) as info:
        action()
    return f"{type(info.value).__name__}: {info.value}"


def _data():
    from skfairtune.datasets import make_biased_images

    data = make_biased_images(120, image_size=16, random_state=0)
    return data.images, data.target, data.sensitive_features


def _clf(**params):
    return tiny_classifier(**{"model_kwargs": dict(TINY), "max_epochs": 1, **params})


def _pretrained():
    X, y, _ = _data()
    message = None
    try:
        tiny_classifier(pretrained=True, model_kwargs=dict(TINY), max_epochs=1).fit(X, y)
    except Exception as exc:  # noqa: BLE001 - the message is what is compared
        message = f"{type(exc).__name__}: {exc}"
    if message is None:
        pytest.skip("the Hugging Face Hub or its cache gave the weights: the offline error cannot be shown")
    return message


def _checkpoint(tmp_path):
    import timm
    import torch

    X, y, _ = _data()
    other = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, **{**TINY, "embed_dim": 32})
    torch.save(other.state_dict(), tmp_path / "vit.pth")
    return raised(lambda: _clf(checkpoint_path=str(tmp_path / "vit.pth")).fit(X, y))


def _search(**params):
    from skfairtune import FairTuneSearchCV

    return FairTuneSearchCV(_clf(), n_trials=1, random_state=0, **params)


def _few_minority_positives(n_positive):
    X, y, s = _data()
    minority = np.flatnonzero((s["group"] == "minority").to_numpy())
    y = y.copy()
    y[minority] = 0
    y[minority[:n_positive]] = 1
    return X, y, s


def _missing_groups():
    X, y, s = _data()
    groups = s["group"].astype(object).to_numpy().copy()
    groups[[2, 5]] = None
    return raised(lambda: _search().fit(X, y, sensitive_features=groups))


def _scorer_without_groups():
    import sklearn
    from sklearn.linear_model import LogisticRegression

    from skfairtune import get_fairness_scorer

    X, y, _ = _data()
    pixels = X.reshape(len(X), -1)
    with sklearn.config_context(enable_metadata_routing=True):
        model = LogisticRegression().fit(pixels, y)
        return raised(lambda: get_fairness_scorer("min_group_auc")(model, pixels, y))


def _different_search(tmp_path):
    from skfairtune import FairTuneSearchCV

    X, y, s = _data()
    storage = str(tmp_path / "search.log")
    FairTuneSearchCV(_clf(max_epochs=1), n_trials=1, storage=storage, study_name="s").fit(
        X, y, sensitive_features=s)
    return raised(lambda: FairTuneSearchCV(_clf(max_epochs=2), n_trials=1, storage=storage, study_name="s").fit(
        X, y, sensitive_features=s))


def _fit(**params):
    X, y, _ = _data()
    return lambda: raised(lambda: _clf(**params).fit(X, y))


#: The start of each FAQ heading -> a function (given tmp_path) returning the message the code raises.
REPRODUCE = {
    "PretrainedWeightsUnavailableError": lambda tmp: _pretrained(),
    "`checkpoint_path`='<path>' does not fit": _checkpoint,
    "`checkpoint_path`='vit.pth' does not exist": lambda tmp: raised(
        lambda: _clf(checkpoint_path="vit.pth").fit(*_data()[:2])),
    "timm cannot build": lambda tmp: _fit(model_kwargs={**TINY, "embed_dim": 15})(),
    "ValueError: device='cuda'": lambda tmp: (_fit(device="cuda")() if not __import__("torch").cuda.is_available()
                                             else pytest.skip("CUDA is available here")),
    "`mask` bit string has length 4": lambda tmp: _fit(mask="0101")(),
    "`mask`='atention'": lambda tmp: _fit(mask="atention")(),
    "`mask`='attention' cannot be expressed": lambda tmp: _fit(mask="attention", mask_space="ln")(),
    "scoring='min_group_auc' needs group labels": lambda tmp: raised(lambda: _search().fit(*_data()[:2])),
    "`sensitive_features` has 2 missing values": lambda tmp: _missing_groups(),
    "`sensitive_features` has 100 rows": lambda tmp: raised(
        lambda: _search().fit(*_data()[:2], sensitive_features=_data()[2]["group"][:100])),
    "Per-group AUC is undefined": lambda tmp: raised(
        lambda: _search(cv=5, fold_scoring="mean").fit(*_few_minority_positives(3)[:2],
                                                        sensitive_features=_data()[2])),
    "Cannot stratify the validation split": lambda tmp: raised(
        lambda: _search().fit(*_few_minority_positives(1)[:2], sensitive_features=_data()[2])),
    "min_group_auc: 1 of 2 group(s)": lambda tmp: raised(lambda: __import__("skfairtune").min_group_auc(
        [0, 1, 0, 1, 0, 0], [.1, .9, .2, .8, .3, .4], sensitive_features=["a"] * 4 + ["b"] * 2)),
    "... needs `sensitive_features` at score time": lambda tmp: _scorer_without_groups(),
    "`scoring='min_auc'` is not a fairness scorer": lambda tmp: raised(
        lambda: _search(scoring="min_auc").fit(*_data()[:2], sensitive_features=_data()[2])),
    "`predict` needs refit=True": lambda tmp: raised(
        lambda: _search(refit=False).fit(*_data()[:2], sensitive_features=_data()[2]).predict(_data()[0])),
    "study '<name>' was made by a different search": _different_search,
    "`storage='/nonexistent/search.log'`": lambda tmp: raised(
        lambda: _search(storage="/nonexistent/search.log").fit(*_data()[:2], sensitive_features=_data()[2])),
}

# scikit-learn's own message (metadata routing off) is left to scikit-learn.
MESSAGE_SECTIONS = {key: value for key, value in sections().items() if not key.startswith("TypeError: <")}


def test_every_message_section_has_a_reproduction():
    unmatched = [heading for heading in MESSAGE_SECTIONS
                 if not any(heading.startswith(key) or key.startswith(heading) for key in REPRODUCE)]
    assert not unmatched, f"FAQ sections whose message no test reproduces: {unmatched}"


@pytest.mark.parametrize("key", list(REPRODUCE))
def test_faq_message_is_what_the_code_says(key, tmp_path):
    heading, shown = next(v for h, v in MESSAGE_SECTIONS.items() if h.startswith(key) or key.startswith(h))
    actual = " ".join(REPRODUCE[key](tmp_path).split())
    head = heading.removeprefix("ValueError: ").removeprefix("... ")
    assert re.search(as_pattern(head), actual), f"heading {heading!r} is not in the message:\n{actual}"
    if shown is not None:
        assert re.fullmatch(as_pattern(shown), actual), f"docs/faq.md shows:\n{shown}\nthe code says:\n{actual}"
