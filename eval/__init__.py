"""GTA and GAIA evaluation of the T3-Agent (DESIGN.md §7): loaders, runner, faithful scorers, reports, the tab.

    scoring.py     gaia_match, gta_match (official / mat / fixed)
    benchmarks.py  GTA dataset.json and GAIA metadata.jsonl as BenchTasks, missing files named
    runner.py      one sandboxed agent run per task; results keyed by (run, task) so a run resumes
    clock.py       a task's own clock: its time limit stands still while it waits for the model
    stepwise.py    GTA's step-by-step mode: each reference step predicted from the reference dialog before it
    metrics.py     AnsAcc, ToolAcc, CodeExec, InstAcc/ArgAcc/SummAcc, GAIA accuracy; protocol and denominator each
    reformat.py    MAT's GAIA re-formatting pass, as MAT's eval.py does it (an option, reported separately)
    contamination.py  `python -m eval contamination`: reads a training set and a benchmark for review.contamination
    report.py      terminal and self-contained HTML reports, flips between a base and a tuned run
    ui.py          the Evaluate tab;  __main__.py  the CLI
"""

import eval.schema  # noqa: F401,E402 — registers the package's tables with core.db, once
