"""What README.md promises about itself: the commands CI runs, a user install line, held-out reports.

Its Python blocks run in tests/docs/test_docs_executed.py with every other page (at tiny sizes;
``SKFAIRTUNE_DOCS_TINY=0`` runs them as written).
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_shows_the_two_commands_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = next(line for line in text.splitlines() if "pytest" in line and "pip install" in line)
    assert test_command.strip() in ci
    assert "skfairtune demo" in text


def test_readme_has_a_plain_user_install_line():
    """Besides the development set-up (test tools, PostgreSQL), one line installs just the library."""
    lines = [line.split("#")[0].strip() for line in README.read_text().splitlines()]
    assert "python3 -m pip install -e ." in lines


def test_readme_usage_reports_fairness_on_held_out_images():
    usage = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    fitted_on = re.search(r"search\.fit\((\w+),", usage).group(1)
    reported_on = re.search(r"fairness_report\((\w+),", usage).group(1)
    assert "train_test_split" in usage and fitted_on == "X_train" and reported_on == "X_test"
