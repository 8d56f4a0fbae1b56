"""Models pickled by an earlier release (the flat package layout) still load and predict identically."""

import pickle
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("name", ["classifier", "search"])
def test_pickles_of_the_flat_layout_load_and_predict_identically(name):
    model = pickle.loads((FIXTURES / f"legacy_{name}.pkl").read_bytes())
    probe = np.load(FIXTURES / "legacy_probe.npy")
    expected = np.load(FIXTURES / f"legacy_{name}_proba.npy")
    np.testing.assert_allclose(model.predict_proba(probe), expected, rtol=0, atol=1e-6)
    assert model.predict(probe).shape == (len(probe),)
