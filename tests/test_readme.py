"""README's usage example really runs, as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_usage_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README lost its usage example"
    script = tmp_path / "readme_usage.py"
    script.write_text("\n".join(blocks))
    # The package as checked out, whether or not it is installed in this interpreter.
    # One torch thread, as for the examples: on a shared 2-core machine a second thread only spins.
    env = {**os.environ, "PYTHONPATH": str(README.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "roc_auc" in result.stdout  # the MetricFrame report printed


def test_readme_shows_the_two_commands_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = next(line for line in text.splitlines() if "pytest" in line and "pip install" in line)
    assert test_command.strip() in ci
    assert "skfairtune demo" in text
