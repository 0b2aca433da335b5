"""`make bench`: genlab's speed side by side with diffusers, and the speed levers on and off (issue 9).

python benchmarks/run.py [--quick] [--[no-]compile] [--device auto|cpu|cuda] [--only SECTION ...] [--out DIR]
writes <out>/<host>-<date>.md (with --quick: <host>-<date>-quick.md).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import sys
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however the script is started

import dataloader_speed  # noqa: E402
import fid_speed  # noqa: E402
import lightning_overhead  # noqa: E402
import sampling_speed  # noqa: E402
import train_speed  # noqa: E402
from bench_config import make_bench  # noqa: E402
from report import machine_lines, write_report  # noqa: E402

SECTIONS = ("train", "lightning", "sampling", "fid")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1-2 rounds: checks the pipeline (< 60 s)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="time the torch.compile variants (default: yes, except with --quick)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--domain-classifier", help="classifier checkpoint for the domain extractor (default: "
                        "runs/classifier_digits/main/checkpoints/last.ckpt if present, else a 2-step stand-in)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def progress(done: str, started: float) -> None:
    print(f"bench: {done} done at {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    # Lightning's hints (num_workers, logging intervals) are about training runs, not these timings.
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    b = make_bench(args.device, args.quick, not args.quick if args.compile is None else args.compile)
    started = time.perf_counter()
    sections, mfu = [], []
    if "train" in args.only:
        versus, levers, mfu_section = train_speed.run(b)
        sections += [versus, levers]
        mfu = [mfu_section]
        progress("training step, levers and MFU", started)
        sections.append(dataloader_speed.run(b))
        progress("DataLoader levers", started)
    if "lightning" in args.only:
        sections.append(lightning_overhead.run(b))
        progress("Lightning overhead", started)
    if "sampling" in args.only:
        sections.append(sampling_speed.run(b))
        progress("sampling", started)
    if "fid" in args.only:
        sections.append(fid_speed.run(b, args.domain_classifier))
        progress("FID features", started)
    sections += mfu  # section 5 last, in the order
    minutes = (time.perf_counter() - started) / 60
    header = machine_lines(b.device) + [f"- wall time: {minutes:.1f} min{' (--quick: tiny sizes)' if b.quick else ''}"]
    date = datetime.date.today().isoformat()
    path = args.out / f"{platform.node()}-{date}{'-quick' if b.quick else ''}.md"
    write_report(path, "genlab benchmarks", header, sections)
    print(f"bench: wrote {path} in {minutes:.1f} min")
    return path


if __name__ == "__main__":
    main()
