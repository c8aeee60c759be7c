"""Padding of MiniCPM-V's length-grouped batches (`train.padding`) on release-shaped records' real lengths.

    python bench/train_padding.py            # CPU, seconds: a tiny MiniCPM-V 4.6 tokenizer and processor
    python bench/train_padding.py --sample mmtraj_sample.json   # the lengths of these release records

The repository's 30 fixture records (or `--sample`'s) are encoded as training examples (the release's full system
prompt, images drawn at the paths the records name). Grouping 30 rows leaves large gaps between neighbours, so the figure is also given for
300 and 3,000 trajectories drawn from the sample's lengths (each scaled by 0.8-1.2), as a real data set has.
One JSON line per (trajectories, token budget); the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGETS = (10_240, 20_480)  # one row of the paper's max length; the paper's batch of 2 (the mat-paper budget)
SIZES = (30, 300, 3000)


def sample_lengths(work: Path, sample_path: Path | None = None) -> list[int]:
    """Token lengths of the sample's records as MiniCPM-V training examples (tiny tokenizer)."""
    from agent.models.tiny import MINICPMV_TILE, build_tiny_minicpmv
    from tests.support.train_records import release_images, sample_records
    from train.data import Encoder, iter_release
    from train.trainer import load_processor

    records_json = sample_records(sample_path)
    sample = work / "sample.json"
    sample.write_text(json.dumps(records_json))
    images = release_images(records_json, work / "images")
    processor = load_processor(str(build_tiny_minicpmv(work / "tiny-minicpmv4_6")))
    records = list(iter_release(sample, images))
    examples = Encoder(processor, max_pixels=4 * MINICPMV_TILE * MINICPMV_TILE).examples(records)
    return [len(e) for e in examples]


class _Sized:
    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def main() -> None:
    from train.padding import padding_fraction, plan_batches

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, help="release records (JSON list) to measure (default: the fixtures)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lengths = sample_lengths(Path(folder), args.sample)
    rng = random.Random(0)
    summary = {"sample_lengths": [min(lengths), max(lengths)]}
    for size in SIZES:
        drawn = lengths if size == len(lengths) else [int(rng.choice(lengths) * rng.uniform(0.8, 1.2))
                                                      for _ in range(size)]
        rows = [_Sized(n) for n in drawn]
        for budget in BUDGETS:
            groups = plan_batches(rows, budget)
            fraction = round(padding_fraction(rows, groups), 4)
            print(json.dumps({"trajectories": size, "token_budget": budget, "batches": len(groups),
                              "padding_fraction": fraction}), flush=True)
            summary[f"padding_{size}_{budget}"] = fraction
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
