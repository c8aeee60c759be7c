"""GTA and GAIA evaluation of the T3-Agent (DESIGN.md §7): loaders, runner, faithful scorers, reports, the tab.

    scoring.py     gaia_match, gta_match (official / mat / fixed)
    benchmarks.py  GTA dataset.json and GAIA metadata.jsonl as BenchTasks, missing files named
    runner.py      one sandboxed agent run per task; results keyed by (run, task) so a run resumes
    stepwise.py    GTA's step-by-step mode: each reference step predicted from the reference dialog before it
    metrics.py     AnsAcc, ToolAcc, CodeExec, InstAcc/ArgAcc/SummAcc, GAIA accuracy; protocol and denominator each
    reformat.py    MAT's GPT re-formatting pass (an option, reported separately)
    report.py      terminal and self-contained HTML reports, flips between a base and a tuned run
    ui.py          the Evaluate tab;  __main__.py  the CLI
"""

import eval.schema  # noqa: F401,E402 — registers the package's tables with core.db, once
