"""Benchmark tasks never reach training: the data is checked against every benchmark evaluation has met.

Evaluation remembers each benchmark's queries in the store (`review.benchmarks`). Before anything is encoded,
every training record is matched against them with the one overlap check (`review.contamination`): a record
whose query is an exact or near duplicate of a benchmark query is refused in one line naming both, unless
`--exclude-benchmark` names that benchmark, which leaves out every record that overlaps it in any way (exact,
near duplicate, a shared 13-gram, the same image) and says how many. The run's log gets one line per known
benchmark (`Overlap.summary()`, over the records trained on), or says that none is known and how to check one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from review.contamination import KINDS, BenchmarkIndex, Overlap, Query, content_hash
from train.data import DataError, Record

REFUSED = ("exact", "near")  # a benchmark task itself, or a copy with a few words changed
LABELS = {"exact": "same query", "near": "near duplicate", "ngram": "shared {n}-gram", "image": "same image"}
CHECK_COMMAND = "python -m eval contamination --data FILE --benchmark gta|gaia --benchmark-data DIR"


class Guard:
    """The known benchmarks' indexes and what the records passed through `filter` did against them.

    `filter` can run over the same records more than once (a scan, then encoding); the first pass decides and
    counts, later passes leave out the same positions."""

    def __init__(self, known: dict[str, list[Query]], exclude: Iterable[str] = (), where: str = "") -> None:
        self.where = where
        self.indexes = {name: BenchmarkIndex(queries) for name, queries in known.items()}
        self.exclude = _chosen(set(exclude), set(known), where)
        self.overlaps = {name: Overlap(name.upper(), index.n, index.near, benchmark_queries=len(index.queries),
                                       benchmark_images=sum(len(q.images) for q in index.queries))
                         for name, index in self.indexes.items()}
        self.left_out: dict[str, dict[str, int]] = {name: dict.fromkeys(KINDS, 0) for name in self.exclude}
        self.dropped: list[int] | None = None  # positions left out, once the first pass is over
        self.read = 0
        self._hash_images = any(index.images for index in self.indexes.values())

    def filter(self, records: Iterable[Record]) -> Iterator[Record]:
        """The records that may train: refuses a benchmark task, leaves out what `exclude` covers."""
        if self.dropped is not None:
            dropped = set(self.dropped)
            yield from (record for position, record in enumerate(records) if position not in dropped)
            return
        dropped: list[int] = []
        for position, record in enumerate(records):
            if self._keep(record):
                yield record
            else:
                dropped.append(position)
        self.dropped = dropped

    def _keep(self, record: Record) -> bool:
        self.read += 1
        query = self._query(record)
        matches = {name: index.match(query) for name, index in self.indexes.items()}
        excluded = [name for name in self.exclude if matches[name]]
        for name in excluded:
            for kind in {kind for pair in matches[name] for kind in pair.kinds}:
                self.left_out[name][kind] += 1
        if excluded:
            return False
        for name, pairs in matches.items():
            refused = next((pair for pair in pairs if set(pair.kinds) & set(REFUSED)), None)
            if refused is not None:
                how = "the same query" if "exact" in refused.kinds else f"a near copy ({refused.similarity:.0%} alike)"
                raise DataError(f"record {record.id!r} is {name.upper()} task {refused.benchmark_id!r} "
                                f"({how}): benchmark tasks never train; leave out every record overlapping "
                                f"{name.upper()} with --exclude-benchmark {name}, or remove it from the data")
        for name, pairs in matches.items():
            overlap = self.overlaps[name]
            overlap.train_queries += 1
            overlap.train_images += len(query.images)
            overlap.train_missing_images += query.missing_images
            overlap.pairs += pairs
        return True

    def _query(self, record: Record) -> Query:
        if not self._hash_images or record.reader is None:
            return Query(record.id, record.trajectory.task.text)
        found = [record.reader.read(name) if name else None for name in record.images]
        return Query(record.id, record.trajectory.task.text,
                     tuple(content_hash(data) for data in found if data is not None), sum(d is None for d in found))

    def report(self) -> list[str]:
        """The log's contamination lines: what was left out, then one summary per known benchmark."""
        lines = []
        if self.exclude:
            total = len(self.dropped or ())
            parts = [f"{name.upper()}: " + ", ".join(f"{LABELS[kind].format(n=self.indexes[name].n)} {count}"
                                                     for kind, count in counts.items() if count)
                     for name, counts in sorted(self.left_out.items()) if any(counts.values())]
            lines.append(f"--exclude-benchmark {','.join(sorted(self.exclude))}: left out {total} of {self.read} "
                         f"records" + (f" ({'; '.join(parts)})" if parts else ""))
        lines += [f"contamination: {self.overlaps[name].summary()}" for name in sorted(self.overlaps)]
        return lines or [f"contamination: no benchmark is known to {self.where or 'the store'} (evaluation records "
                         f"each benchmark it runs); check this data against one with: {CHECK_COMMAND}"]


def guard_for(db: str | Path | None, exclude: str, log: Callable[[str], None] = print) -> Guard:
    """The guard for a run: the benchmarks known to the store at `db` (none when there is no such file)."""
    from review.benchmarks import known
    from review.store import Store

    names = [name.strip().lower() for name in exclude.split(",") if name.strip()]
    if db is None or not Path(db).is_file():
        return Guard({}, names, f"the store {db}" if db else "any store (no --db)")
    with Store(db) as store:
        found = known(store)
    return Guard({name.lower(): queries for name, queries in found.items()}, names, f"the store {db}")


def _chosen(names: set[str], known: set[str], where: str) -> set[str]:
    """The benchmarks to leave out; one the store does not know is refused (nothing could be left out)."""
    unknown = sorted(names - known)
    if unknown:
        have = f"it knows {', '.join(sorted(known))}" if known else "it knows none"
        raise DataError(f"--exclude-benchmark {unknown[0]}: {where or 'the store'} holds no {unknown[0].upper()} "
                        f"queries ({have}); evaluate on it first, or check the data with {CHECK_COMMAND}")
    return names
