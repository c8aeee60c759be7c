"""The training data pipeline at release scale: peak memory, time to the first step, encoding throughput.

    python bench/train_data.py                 # 2,000 and 20,000 trajectories (CPU, minutes)
    python bench/train_data.py --sizes 2000    # one size
    python bench/train_data.py --sample mmtraj_sample.json   # repeat these release records instead

Records are release-shaped: the repository's 30 fixture records (the release's system prompt, steps and
observations in its shapes, with our own content; `--sample` takes release records instead) repeated under new
ids, about half with pictures whose files have the release's sizes (1280x960, 1024x768, 640x480, 800x600,
1920x1080, 500x375 JPEGs; 24 distinct pictures hard-linked under a name per record, so the disk holds 24 files). The tiny Qwen2-VL processor (real image processor, small tokenizer) encodes them at the serving
default of 1024 x 28 x 28 pixels per image, where one 1280x960 image is 17.4 MiB of float32 pixels.

Each size runs in a fresh process: read and scan the records, encode them into the token cache (cold), then the
same again with the cache in place (cached), then the DataLoader (2 workers) builds the first 4 steps' rows with
their pixels, as training would. Peak RSS is the process's own plus its largest worker's. One JSON line per size;
the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = ((1280, 960), (1024, 768), (640, 480), (800, 600), (1920, 1080), (500, 375))


def make_release(work: Path, count: int, sample_path: Path | None = None) -> tuple[Path, Path]:
    """`count` release-shaped records as JSON and an image folder of hard links to 24 pictures; written one
    record at a time, so the peak memory measured is the pipeline's, not the generator's."""
    from PIL import Image

    from tests.support.train_records import sample_records

    sample = sample_records(sample_path)
    pool = work / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    pictures = []
    for index in range(24):
        path = pool / f"{index}.jpg"
        if not path.exists():
            Image.effect_noise(SIZES[index % len(SIZES)], 40 + index).convert("RGB").save(path, quality=90)
        pictures.append(path)
    images = work / "images"
    data = work / "release.json"
    with data.open("w") as handle:
        handle.write("[")
        for index in range(count):
            handle.write(("," if index else "") + json.dumps(_record(sample, index, images, pictures)))
        handle.write("]")
    return data, images


def _record(sample: list[dict], index: int, images: Path, pictures: list[Path]) -> dict:
    """Sample record `index % len(sample)` under a new id, its pictures hard-linked under new names."""
    from agent.steps import Trajectory

    record = json.loads(json.dumps(sample[index % len(sample)]))
    record["id"] = f"bench-{index}"
    names = Trajectory.from_conversations(record["conversations"]).task.images
    for number, name in enumerate(names):
        fresh = f"bench/{index}/{number}.jpg"
        record["conversations"][1]["value"] = record["conversations"][1]["value"].replace(name, fresh)
        target = images / fresh
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(pictures[(index + number) % len(pictures)], target)
    return record


def measure(count: int, work: Path, sample_path: Path | None = None) -> dict:
    """The pipeline on `count` records (runs in its own process)."""
    from agent.models.tiny import build_tiny_qwen2vl
    from train.presets import build_config
    from train.stream import Rows, loader
    from train.trainer import image_reader, load_processor, plan_steps, prepare_data, process_items
    from train.packing import plan_rows

    data, images = make_release(work, count, sample_path)
    base = build_tiny_qwen2vl(work / "tiny")
    config = build_config("mat-paper", data=str(data), images=str(images), base=str(base), out=str(work / "out"),
                          cache_dir=str(work / "cache"), data_workers=2)
    row = {"trajectories": count}
    for phase in ("cold", "cached"):
        started = time.perf_counter()
        prepared = prepare_data(config, log=lambda message: None)
        seconds = time.perf_counter() - started
        row[f"{phase}_prepare_s"] = round(seconds, 1)
        row[f"{phase}_records_per_s"] = round(count / seconds, 1)
    cache = prepared.cache
    processor = load_processor(str(base))
    started = time.perf_counter()
    steps = plan_steps(plan_rows(cache.lengths, config.row_tokens), config)
    items = process_items(steps[:4], cache.label_tokens, "token", 0, 1)
    batches = iter(loader(Rows(cache, image_reader(config), processor, config.max_pixels, items), 2))
    _, first = next(batches)
    row["first_step_rows_s"] = round(time.perf_counter() - started, 2)
    row["time_to_first_step_cached_s"] = round(row["cached_prepare_s"] + row["first_step_rows_s"], 1)
    pixels = sum(e.pixel_values.numel() * 4 for e in first if e.pixel_values is not None)
    for _ in batches:
        pass
    row["first_row_pixel_mib"] = round(pixels / 2**20, 1)
    row["tokens"] = cache.summary["tokens"]
    row["examples"] = len(cache)
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    row["peak_rss_gib"] = round((self_kib + worker_kib) / 2**20, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--sample", type=Path, help="release records (JSON list) to repeat (default: the fixtures)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="bench-train-data-") as folder:
            print(json.dumps(measure(args.one, Path(folder), args.sample)), flush=True)
        return
    rows = []
    for size in args.sizes:
        sample = ["--sample", str(args.sample.resolve())] if args.sample else []
        result = subprocess.run([sys.executable, __file__, "--one", str(size), *sample], capture_output=True,
                                text=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
        if result.returncode:
            raise SystemExit(result.stderr[-2000:])
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    summary = {f"{key}_{row['trajectories']}": row[key] for row in rows
               for key in ("peak_rss_gib", "time_to_first_step_cached_s", "cold_records_per_s",
                           "cached_records_per_s")}
    if len(rows) > 1:
        summary["peak_rss_ratio"] = round(rows[-1]["peak_rss_gib"] / rows[0]["peak_rss_gib"], 2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
