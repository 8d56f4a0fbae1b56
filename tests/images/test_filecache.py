"""Bounded memory: file paths decoded once into a memory-mapped cache, torch Datasets as input."""

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skfairtune import FairTuneSearchCV
from skfairtune._images._filecache import ImageCache, resolve_image_cache
from skfairtune._images._geometry import Geometry

from ..conftest import tiny_classifier

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def image_files(tmp_path, random_images):
    X, y = random_images
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths, X, y


@pytest.fixture
def count_decodes(monkeypatch):
    from skfairtune import _imageio

    calls = []
    lock = threading.Lock()
    real = _imageio._read

    def counting(path, geometry, bit_depth=None):
        with lock:
            calls.append(str(path))
        return real(path, geometry, bit_depth)

    monkeypatch.setattr(_imageio, "_read", counting)
    return calls


def test_search_decodes_every_file_once_across_trials_and_refit(image_files, count_decodes, tmp_path):
    paths, X, y = image_files
    # crop_pct 1.0: files and arrays at the model's size reach it unresampled, so they predict alike.
    clf = tiny_classifier(max_epochs=1, image_cache=str(tmp_path / "cache"), timm_transform={"crop_pct": 1.0})
    search = FairTuneSearchCV(clf, n_trials=2, cv=2, scoring="roc_auc", baselines=None, random_state=0)
    search.fit(paths, y)
    assert len(count_decodes) == len(paths)  # folds, 2 trials and the refit: one decode per file
    search.best_estimator_.predict_proba(paths)
    tiny_classifier(max_epochs=1, image_cache=str(tmp_path / "cache"),
                    timm_transform={"crop_pct": 1.0}).fit(paths, y)  # a later fit
    assert len(count_decodes) == len(paths)
    np.testing.assert_allclose(search.predict_proba(paths), search.predict_proba(X), atol=1e-5)


def test_edited_file_is_decoded_again(image_files, count_decodes, tmp_path):
    paths, X, _ = image_files
    cache = ImageCache(tmp_path / "cache")
    geometry = Geometry((16, 16), 1.0)
    first = cache.decode(paths, geometry)
    Image.fromarray(255 - X[0]).save(paths[0])
    os.utime(paths[0], ns=(0, 10**18))  # a different mtime even on coarse clocks
    second = cache.decode(paths, geometry)
    assert (cache.hits, cache.misses) == (0, 2)
    np.testing.assert_array_equal(second[0], 255 - first[0])
    assert isinstance(second, np.memmap)


def test_memory_mapped_entry_is_not_written_back(image_files, tmp_path):
    paths, _, _ = image_files
    cache = ImageCache(tmp_path / "cache")
    images = cache.decode(paths, Geometry((16, 16), 1.0))
    images[0] = 0  # copy-on-write: the entry on disk keeps its pixels
    again = cache.decode(paths, Geometry((16, 16), 1.0))
    assert again[0].any()


def test_unwritable_cache_directory_falls_back_to_memory(image_files, tmp_path):
    paths, X, _ = image_files
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="not writable"):
        images = ImageCache(blocker / "cache").decode(paths, Geometry((16, 16), 1.0))
    np.testing.assert_array_equal(images, X)  # 16 px files into a 16 px model: unchanged


@pytest.mark.parametrize("value, message", [(3, "`image_cache` must be 'auto', a directory"),
                                            (True, "`image_cache` must be")])
def test_bad_image_cache_is_named(value, message):
    with pytest.raises(ValueError, match=message):
        resolve_image_cache(value)


def test_torch_dataset_input_predicts_like_the_array(random_images):
    X, y = random_images

    class Pairs(torch.utils.data.Dataset):  # torchvision style: (CHW tensor, label)
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return torch.from_numpy(X[i].transpose(2, 0, 1).copy()), int(y[i])

    reference = tiny_classifier(max_epochs=1).fit(X, y).predict_proba(X)
    proba = tiny_classifier(max_epochs=1).fit(Pairs(), y).predict_proba(Pairs())
    np.testing.assert_allclose(proba, reference, atol=1e-5)


_PEAK_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from skfairtune import FairTuneClassifier

    def anon_kb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("RssAnon:"))

    paths = json.load(open(sys.argv[1])); cache = sys.argv[2]
    y = np.arange(len(paths)) % 2
    clf = FairTuneClassifier("vit_tiny_patch16_224", pretrained=False, max_epochs=1, batch_size=16,
                             model_kwargs=dict(img_size=96, patch_size=16, embed_dim=16, depth=1, num_heads=2),
                             image_cache=None if cache == "none" else cache, random_state=0)
    clf.fit(paths[:64], y[:64])  # warm up torch's allocator and imports before measuring
    clf.predict_proba(paths[:64])
    peak, stop = [anon_kb()], []
    base = peak[0]
    def sample():
        while not stop:
            peak.append(anon_kb()); time.sleep(0.002)
    t = threading.Thread(target=sample); t.start()
    clf.fit(paths, y); clf.predict_proba(paths)
    stop.append(1); t.join()
    print(json.dumps({"growth_mb": (max(peak) - base) / 1024}))
""")


_N_FILES = 8000  # twice the files, the same per-batch working memory: growth must not follow the set


@pytest.mark.slow
def test_paths_input_never_materialises_the_whole_set(tmp_path):
    if not Path("/proc/self/status").exists():
        pytest.skip("RssAnon is read from /proc (Linux)")
    rng = np.random.default_rng(0)
    folder = tmp_path / "many"
    folder.mkdir()
    paths = []
    for i in range(_N_FILES):  # 8,000 x 96 x 96 x 3 = 221 MB decoded
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path, compress_level=0)
        paths.append(str(path))
    listing = tmp_path / "paths.json"
    listing.write_text(__import__("json").dumps(paths))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def growth(cache):
        out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(listing), cache], env=env,
                             capture_output=True, text=True, timeout=600, check=True)
        return __import__("json").loads(out.stdout.strip().splitlines()[-1])["growth_mb"]

    data_mb = _N_FILES * 96 * 96 * 3 / 2**20
    in_memory = growth("none")
    mapped = growth(str(tmp_path / "cache"))
    print(f"anonymous memory growth: decoded in memory {in_memory:.0f} MB, memory-mapped cache "
          f"{mapped:.0f} MB, decoded set {data_mb:.0f} MB")
    assert in_memory > 0.8 * data_mb  # the check can see a whole-set copy ...
    # ... and the cache makes none: what remains is per-batch working memory.
    assert mapped < 0.35 * data_mb, (mapped, in_memory)
