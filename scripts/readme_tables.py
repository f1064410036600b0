"""Print compact Markdown tables (test AUC by rate, mean [95% interval]; single-modality scenarios) from a
leaderboard CSV.

Used to paste the measured synthetic results into README:
python scripts/readme_tables.py results/synthetic/leaderboard.csv [default|tuned]
(the second argument keeps the rows of that setting, and the reference rows).
"""
from __future__ import annotations

import sys

import pandas as pd


def cell(row: pd.Series) -> str:
    if row.empty or pd.isna(row["mean"]).all():
        return "—"
    r = row.iloc[0]
    if pd.notna(r.get("ci_low")) and pd.notna(r.get("ci_high")):  # 95%: seeds and test samples
        return f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    return f"{r['mean']:.3f}"


def main(path: str, setting: str | None = None) -> None:
    df = pd.read_csv(path, dtype={"rate": str, "setting": str})
    if setting:  # keep one setting's method rows (and the reference rows, whose setting is empty)
        keep = df.setting.fillna("").str.startswith(setting) | df.method.isin(["bayes_oracle", "evidence_ceiling"])
        df = df[keep]
    summary = df[(df.table == "summary") & (df.metric == "test_auc")]
    rates = sorted({r for r in summary.rate if r not in ("AVG",)}, key=float)
    order = summary.drop_duplicates("display")
    order = order.assign(is_ref=order.display.str.startswith("Bayes")).sort_values(["is_ref", "display"])
    print("| method | " + " | ".join(f"rate {r}" for r in rates) + " | AVG |")
    print("|---|" + "---:|" * (len(rates) + 1))
    for display in order.display:
        sub = summary[summary.display == display]
        cells = [cell(sub[sub.rate == r]) for r in rates + ["AVG"]]
        print(f"| {display} | " + " | ".join(cells) + " |")
    print()
    scen = df[(df.table == "scenario")]
    if not scen.empty:
        metrics = ["full_auc", "image_missing_auc", "tabular_missing_auc"]
        for rate in ("0",):
            sub = scen[scen.rate == rate]
            print(f"| method (trained at rate {rate}) | full | image missing | tabular missing |")
            print("|---|---:|---:|---:|")
            for display in order.display:
                s = sub[sub.display == display]
                print(f"| {display} | " + " | ".join(cell(s[s.metric == m]) for m in metrics) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/synthetic/leaderboard.csv",
         sys.argv[2] if len(sys.argv) > 2 else None)
