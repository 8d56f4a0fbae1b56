"""The demo's table: one row per method, the verdict on which differences are within noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FAIRTUNE_TITLE", "Row", "format_table", "noise_verdict"]

#: FairTune as it chose (a searched mask, or a baseline it kept); compare_methods' other rows keep their names.
FAIRTUNE_TITLE = "FairTune"


@dataclass
class Row:
    method: str
    mask: str
    lr: float
    val_score: float
    auc: float = math.nan
    min_group_auc: float = math.nan
    auc_gap: float = math.nan
    eoddsd: float = math.nan
    dpd: float = math.nan
    trainable_params: int = 0
    time_s: float = 0.0
    min_group_auc_diff: float = math.nan
    diff_ci_low: float = math.nan
    diff_ci_high: float = math.nan
    ci_contains_zero: bool = True


def format_table(rows: list[Row], depth_units: int, scoring_label: str, fairtune_is: str | None) -> str:
    header = ["method", "lr", f"val {scoring_label}", "AUC", "min-group AUC", "vs FairTune [95% CI]", "AUC gap",
              "EOddsD", "DPD", "trainable", "time (s)"]
    lines = []
    for row in rows:
        units = f"= {fairtune_is}" if fairtune_is else f"{row.mask.count('1')}/{depth_units} units"
        diff = ("-" if row.method == FAIRTUNE_TITLE else
                f"{row.min_group_auc_diff:+.3f} [{row.diff_ci_low:+.3f}, {row.diff_ci_high:+.3f}]")
        lines.append([
            f"{row.method}" + (f" [{units}]" if row.method == FAIRTUNE_TITLE else ""), f"{row.lr:.1e}",
            f"{row.val_score:.3f}", f"{row.auc:.3f}", f"{row.min_group_auc:.3f}", diff, f"{row.auc_gap:.3f}",
            f"{row.eoddsd:.3f}", f"{row.dpd:.3f}", f"{row.trainable_params:,}", f"{row.time_s:.0f}",
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines), rule])


def noise_verdict(rows: list[Row]) -> str:
    """One plain sentence per baseline: is its difference to FairTune more than noise?"""
    said = []
    for row in rows:
        if row.method == FAIRTUNE_TITLE:
            continue
        if math.isnan(row.min_group_auc_diff):
            said.append(f"{row.method}: not available (no such trial completed)")
        elif row.ci_contains_zero:
            said.append(f"{row.method}: interval contains 0")
        else:
            better = "FairTune better" if row.min_group_auc_diff < 0 else "the baseline better"
            said.append(f"{row.method}: {better} (interval excludes 0)")
    return "Held-out worst-group AUC differences to FairTune: " + "; ".join(said) + "."


