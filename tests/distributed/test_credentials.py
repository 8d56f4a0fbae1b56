"""A pickled or cloned search never carries a database password."""

from __future__ import annotations

import os
import pickle

import optuna
import pytest
from sklearn.base import clone

from skfairtune import _credentials
from skfairtune.distributed._credentials import expand_storage_url

from ._helpers import biased_images, tiny_search

SECRET = "hunter2-s3cret"
URL = f"postgresql+psycopg://ann:{SECRET}@127.0.0.1:1/search"
REDACTED = "postgresql+psycopg://ann:***@127.0.0.1:1/search"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_search(**overrides):
    return tiny_search(**{"max_epochs": 1, "n_trials": 2, "baselines": ("linear",), "study_name": "s",
                          **overrides})


_data = biased_images


def test_pickle_and_clone_hold_the_redacted_url():
    search = make_search(storage=URL)
    for copy in (pickle.loads(pickle.dumps(search)), clone(search)):
        assert copy.storage == REDACTED
    assert SECRET.encode() not in pickle.dumps(search)
    assert SECRET not in repr(clone(search))
    # The original keeps its URL: it is the user's object.
    assert search.storage == URL


def test_a_clone_connects_like_its_original_in_this_process():
    assert expand_storage_url(clone(make_search(storage=URL)).storage) == URL


def test_unpickled_elsewhere_the_search_asks_for_the_password(monkeypatch, no_training):
    blob = pickle.dumps(make_search(storage=URL))
    monkeypatch.setattr(_credentials, "_KNOWN", {})  # another process knows no password of this one
    revived = pickle.loads(blob)
    data = _data()
    with pytest.raises(ValueError, match=r"has its password redacted: a pickled or cloned search never keeps "
                                         r"it\. To resume, give the URL again.*\$\{PGPASSWORD\}") as info:
        revived.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert SECRET not in str(info.value)


def test_environment_reference_is_expanded_only_when_opening(tmp_path, monkeypatch):
    monkeypatch.setenv("FT_TEST_DIR", str(tmp_path))
    storage = "sqlite:///${FT_TEST_DIR}/s.db"
    data = _data()
    search = make_search(storage=storage).fit(data.images, data.target,
                                                sensitive_features=data.sensitive_features)
    assert (tmp_path / "s.db").exists() and len(search.study_.trials) == 2
    assert clone(search).storage == storage and pickle.loads(pickle.dumps(search)).storage == storage


def test_missing_environment_variable_fails_before_training(monkeypatch, no_training):
    monkeypatch.delenv("FT_NOT_SET", raising=False)
    data = _data()
    with pytest.raises(ValueError, match=r"references \$\{FT_NOT_SET\}, which is not set in this environment; "
                                         r"export FT_NOT_SET"):
        make_search(storage="postgresql+psycopg://ann:${FT_NOT_SET}@db/s").fit(
            data.images, data.target, sensitive_features=data.sensitive_features)


def test_a_pickled_fitted_search_keeps_its_trials_in_memory(tmp_path):
    data = _data()
    search = make_search(storage=f"sqlite:///{tmp_path}/s.db").fit(
        data.images, data.target, sensitive_features=data.sensitive_features)
    revived = pickle.loads(pickle.dumps(search))
    assert isinstance(revived.study_._storage, optuna.storages.InMemoryStorage)
    assert [t.params for t in revived.study_.trials] == [t.params for t in search.study_.trials]
    assert revived.best_params_ == search.best_params_


def test_postgres_password_never_in_a_pickle():
    url = os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("needs $SKFAIRTUNE_TEST_POSTGRES_URL (run .ci/start-postgres.sh)")
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    data = _data()
    search = make_search(storage=url, study_name=f"cred-{os.getpid()}").fit(
        data.images, data.target, sensitive_features=data.sensitive_features)
    blob = pickle.dumps(search)
    assert password.encode() not in blob
    revived = pickle.loads(blob)
    assert len(revived.study_.trials) == 2 and password not in revived.storage


@pytest.mark.parametrize("text, expected", [
    # One URL: rendered by SQLAlchemy (URL.render_as_string(hide_password=True)).
    (URL, REDACTED),
    ("postgresql://ann:p%40ss%2Fword@db/s", "postgresql://ann:***@db/s"),  # an encoded password
    ("mysql+pymysql://ann:s3cret@db/s?charset=utf8&password=again",
     "mysql+pymysql://ann:***@db/s?charset=utf8&password=***"),  # query order kept
    ("postgresql://ann@db/s", "postgresql://ann@db/s"),
    ("postgresql://ann:p@ss@db/s", "postgresql://ann:***@db/s"),  # raw "@": SQLAlchemy would misread it
    # Any other text keeps the text rules.
    (f"could not connect to {URL}: timeout", f"could not connect to {REDACTED}: timeout"),
    ("host=db password=s3cret user=ann", "host=db password=*** user=ann"),
    ("runs/search.log", "runs/search.log"),
])
def test_redact_url_renders_urls_with_sqlalchemy(text, expected):
    from sqlalchemy.engine import make_url

    from skfairtune.distributed import redact_url

    assert redact_url(text) == expected
    assert "s3cret" not in redact_url(text) and SECRET not in redact_url(text)
    if text == URL:
        assert redact_url(text) == make_url(text).render_as_string(hide_password=True)
