"""The scale benchmark's smoke mode (benchmarks/bench_images.py)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_images_smoke(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_images.py"), "--smoke",
                           "--workdir", str(tmp_path / "work"), "--json", str(out), "--threads", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for line in ("plain Pillow loop", "memory-mapped cache", "search:", "refit on all", "peak RSS"):
        assert line in proc.stdout
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert report["cache_entries"] == 1  # search, folds, trials and refit shared one decode
    assert stages["plain_loop_img_s"] > 0 and stages["ours_one_thread_img_s"] > 0
    assert stages["peak_rss_mb"] > 0 and stages["refit_s"] > 0
