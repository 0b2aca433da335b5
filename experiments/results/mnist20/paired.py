"""Paired seed differences between two cells of a committed table CSV: the trend checks of README.md.

Every cell of a table samples seed k from the same x_T, so most of a seed's luck is shared across the cells of that
seed. The difference of two cells taken within each seed, then averaged over the seeds, cancels that shared part;
its std is the noise that matters for "is A better than B".

    python experiments/results/mnist20/paired.py TABLE.csv "ROW A|COLUMN A" "ROW B|COLUMN B" [--metric fid]
"""

import argparse
import csv
import statistics
import sys


def seed_values(rows: list[dict[str, str]], cell: str, metric: str) -> dict[str, float]:
    row, _, column = cell.partition("|")
    for line in rows:
        if line["row"] == row and line["column"] == column:
            return dict(zip(line["seeds"].split(), map(float, line[f"{metric}_values"].split())))
    fail(f"no cell with row {row!r} and column {column!r} (give ROW|COLUMN as in the CSV's row and column)")
    return {}


def fail(message: str) -> None:
    print(f"paired.py: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("a", help="ROW|COLUMN (COLUMN empty for a table without columns)")
    parser.add_argument("b")
    parser.add_argument("--metric", default="fid")
    args = parser.parse_args()
    try:
        with open(args.csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        fail(f"cannot read {args.csv}: {error.strerror}")
    if rows and f"{args.metric}_values" not in rows[0]:
        fail(f"{args.csv} has no {args.metric}_values column (a table CSV written before per-seed values; render the "
             "table again with genlab table, its cells are kept)")
    a, b = seed_values(rows, args.a, args.metric), seed_values(rows, args.b, args.metric)
    seeds = sorted(set(a) & set(b), key=int)
    diffs = [a[s] - b[s] for s in seeds]
    spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    print(f"{args.metric}: A - B = {statistics.fmean(diffs):+.3f} ± {spread:.3f} (std over seeds {' '.join(seeds)}; "
          f"per seed {' '.join(f'{d:+.3f}' for d in diffs)})")


if __name__ == "__main__":
    main()
