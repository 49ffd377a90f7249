"""Make the two-starts table of the separable-filters tutorial.

Run from the repository root:

    python docs/scripts/filter_starts.py             # about 10 minutes on 2 cores
    python docs/scripts/filter_starts.py --quick     # rank 2 on 6 kernels, to check it

`--quick` writes to a new temporary folder instead of docs/images/filter_starts/ (or to
`--out`) and records nothing in made_by.json.

Writes `two_starts.md` (atomically): for ranks 4, 2 and 8, on the kernels of
`benchmarks/filters.py`'s bar table, how many hold the bar (no lobe below -1e-3 of the
peak, a relative error below the NMF baseline's) with the fit from the SVD alone and
with the bank `diffprims filter` keeps (the SVD and NMF starts, their fits, the lowest
polished by L-BFGS), and the kernels where the first does not. Prints every row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from made_by import output_folder, record  # docs/scripts/made_by.py

from diffprims._files import atomic_write

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import filters  # noqa: E402  (benchmarks/filters.py)

OUT = ROOT / "docs" / "images" / "filter_starts"
RANKS = (4, 2, 8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="rank 2 on six kernels")
    parser.add_argument("--out", type=Path, help=f"the folder to write (default {OUT})")
    args = parser.parse_args()
    args.out = output_folder(args.out, args.quick, OUT)
    if args.quick:
        names = list(filters.bar_kernels())[:6]
        filters.bar_kernels = lambda full=filters.bar_kernels(): {n: full[n] for n in names}
    lines = [
        "| rank | kernels | the fit from the SVD holds the bar | the bank kept holds it |",
        "|---:|---:|---|---|",
    ]
    short = []
    for rank in (2,) if args.quick else RANKS:
        rows = list(filters.bar_rows(rank))
        for row in rows:
            print(rank, row, flush=True)
        count = lambda key, v: sum(row[key] == v for row in rows)  # noqa: E731
        said = lambda key: ", ".join(  # noqa: E731
            f"{count(key, v)} {label}"
            for v, label in (("held", "held"), ("tie", "tied (within 1e-4)"), ("MISSED", "missed"))
            if count(key, v) or v == "held"
        )
        lines.append(f"| {rank} | {len(rows)} | {said('svd_fit')} | {said('bar')} |")
        for row in rows:
            if row["svd_fit"] != "held" or row["bar"] != "held":
                e = row["errors"]
                short.append(
                    f"| {row['name']} | {rank} | {row['nmf']:.5f} | {e['svd']:.5f} | "
                    f"{e['fit']:.5f} | {e.get('fit from NMF', float('nan')):.5f} | "
                    f"{e[row['kept']]:.5f} ({row['kept']}) |"
                )
    lines += [
        "",
        "Where the fit from the SVD alone falls short (relative L2 errors):",
        "",
        "| kernel | rank | NMF | SVD | fit from the SVD | fit from the NMF | kept |",
        "|---|---:|---:|---:|---:|---:|---|",
        *short,
    ]
    table = "\n".join(lines) + "\n"
    atomic_write(args.out / "two_starts.md", lambda path: Path(path).write_text(table))
    if not args.quick:
        record(args.out, __file__)
    print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
