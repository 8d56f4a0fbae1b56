import pytest

from skfairtune._training._trainer import Trainer


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any trial starts training: the search must be refused before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started although the search should have been refused")

    monkeypatch.setattr(Trainer, "step", refuse)
