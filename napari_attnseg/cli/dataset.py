"""`attnseg dataset`: list the cases of an exported dataset, or take one out (its files kept aside)."""

from __future__ import annotations

import argparse

NAME = "dataset"
HELP = "List the cases of a dataset you exported, or take one out (--remove CASE: its files are moved aside, not deleted)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder written by attnseg export / the Correct tab")
    parser.add_argument("--remove", metavar="CASE",
                        help="take this case out: its files move to DATASET/removed/CASE_<time>/ with its manifest "
                             "entry; dataset.json / datalist.json and the manifest no longer list it")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..correct import format_slice_ranges
    from ..data.cases import dataset_cases, remove_case

    folder = Path(str(args.dataset)).expanduser()
    if args.remove:
        dest = remove_case(folder, args.remove)
        print(f"removed case {args.remove} from {folder}; its files and manifest entry are kept in {dest}")
        left = dataset_cases(folder)
        print(f"{len(left)} case{'' if len(left) == 1 else 's'} left")
        return 0
    cases = dataset_cases(folder)
    print(f"{folder}: {len(cases)} case{'' if len(cases) == 1 else 's'}")
    for c in cases:
        reviewed = "all labelled" if c.reviewed_slices is None else \
            f"reviewed {format_slice_ranges(c.reviewed_slices) or 'none'}"
        shape = " x ".join(map(str, c.shape)) or "?"
        print(f"  {c.case_id}  {c.source_name or '?'}  {shape}  {reviewed}  exported {c.exported or '?'}")
    return 0
