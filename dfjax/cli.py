"""`dfjax run | report | data | list | bench` -- parses arguments and calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

DEFAULT_STORE = Path("runs") / "dfjax.sqlite"


def _parse_only(items: list[str]) -> dict[str, list[str]]:
    only: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--only expects AXIS=V1,V2, got {item!r}")
        axis, values = item.split("=", 1)
        only.setdefault(axis, []).extend(v for v in values.split(",") if v)
    return only


def cmd_run(args) -> int:
    from dfjax.configs import get_config
    from dfjax.runner import ConfigError, apply_overrides, expand, run_matrix
    from dfjax.store import Store
    from dfjax.xla import use_cpu_cores

    use_cpu_cores()  # one JAX CPU device per core, to split attack batches (dfjax/xla.py)
    try:
        config = apply_overrides(get_config(args.config), args.set)
        only = _parse_only(args.only)
        cells = expand(config, only)  # validates before anything runs
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with Store(args.store) as store:
        summary = run_matrix(config, store, only=only, data_dir=args.data_dir,
                             checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress)
    total = time.perf_counter() - start
    s = summary.seconds
    print(f"{config.name}: {len(cells)} cells: {summary.done} run, {summary.skipped} already "
          f"stored, {summary.failed} failed")
    print(f"time: data {s['data']:.1f} s, training {s['training']:.1f} s, attacks "
          f"{s['attacks']:.1f} s, total {total:.1f} s")
    for cell_id, error in summary.failures:
        print(f"  failed {cell_id}: {error}")
    return 1 if summary.failed else 0


def cmd_report(args) -> int:
    from dfjax.reporting import write_report
    from dfjax.store import Store

    if not Path(args.store).exists():
        print(f"error: no results store at {args.store}; run `dfjax run` first", file=sys.stderr)
        return 2
    with Store(args.store) as store:
        written = write_report(store, Path(args.out))
    for path in written:
        print(path)
    return 0


def _dataset_spec(args):
    from dfjax.config import DatasetSpec

    import ast

    options = {}
    for item in args.option:
        if "=" not in item:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[key] = raw
    spec = DatasetSpec(name=args.name, options=options)
    if args.image_size is not None:
        spec = dataclasses.replace(spec, image_size=args.image_size)
    if args.num_examples is not None:
        spec = dataclasses.replace(spec, num_examples=args.num_examples)
    return spec


def cmd_data(args) -> int:
    from dfjax.data import DATASETS, load_dataset
    from dfjax.registry import UnknownNameError

    try:
        DATASETS.get(args.name)
        spec = _dataset_spec(args)
        splits = load_dataset(spec, data_dir=args.data_dir, manual_dir=args.manual_dir)
    except (UnknownNameError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.action == "prepare":
        for split in ("train", "validation", "test"):
            s = splits.split(split)
            print(f"{split}: {len(s)} examples, {int((s.labels == 1).sum())} fake, "
                  f"shape {s.images.shape[1:]}")
        report = Path(splits.info.get("report_path", ""))
        if report.is_file():
            print(f"preparation report (skipped and counted inputs): {report}")
        return 0
    from dfjax.data.show import save_grid

    out = Path(args.out or f"{args.name}.png")
    save_grid(splits, out)
    print(out)
    return 0


def cmd_list(args) -> int:
    if args.what == "registries":
        from dfjax.attacks import ATTACKS
        from dfjax.configs import names
        from dfjax.data import DATASETS
        from dfjax.defences import DEFENCES
        from dfjax.models import MODELS
        from dfjax.training import RECIPES

        for title, registry in (("datasets", DATASETS), ("models", MODELS), ("training", RECIPES),
                                ("defences", DEFENCES), ("attacks", ATTACKS)):
            print(f"{title}: {', '.join(registry.names())}")
        print(f"configs: {', '.join(names())}")
        return 0
    from dfjax.configs import get_config
    from dfjax.runner import ConfigError, expand

    try:
        cells = expand(get_config(args.config))
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c in cells:
        print(f"{c.cell_id}  {c.dataset.label()} {c.model.label()} {c.training.label()} "
              f"{c.defence.label()} {c.attack.label()} {c.attack.norm} delta={c.attack.delta:g}")
    return 0


BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def cmd_bench(args) -> int:
    import subprocess

    from dfjax.benchmarks import compare, summary_table

    if args.action == "compare":
        if len(args.files) != 2:
            print("error: bench compare takes BASE.json NEW.json", file=sys.stderr)
            return 2
        regressions, notes = compare(Path(args.files[0]), Path(args.files[1]),
                                     threshold=args.threshold)
        for note in notes:
            print(f"note: {note}")
        for change in regressions:
            print(f"REGRESSION {change}")
        print(f"{len(regressions)} regression(s) (threshold {args.threshold:.0%} on "
              "normalised medians; tracked metrics must not change)")
        return 1 if regressions else 0
    if not BENCH_DIR.is_dir():
        print(f"error: no bench/ folder at {BENCH_DIR} (run from a source checkout)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", str(BENCH_DIR), "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={out}", "--rootdir", str(BENCH_DIR)]
    if args.short:
        command.append("--short")
    if args.k:
        command += ["-k", args.k]
    code = subprocess.call(command)
    if code == 0:
        print(summary_table(out))
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a matrix; stored cells are skipped")
    run.add_argument("--config", default="default")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2")
    run.add_argument("--store", type=Path, default=DEFAULT_STORE)
    run.add_argument("--data-dir", type=Path, default=None)
    run.add_argument("--checkpoint-dir", type=Path, default=None)
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="tables and plots from a store")
    report.add_argument("--store", type=Path, default=DEFAULT_STORE)
    report.add_argument("--out", type=Path, default=Path("results"))
    report.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="prepare or look at a dataset")
    data.add_argument("action", choices=("prepare", "show"))
    data.add_argument("name")
    data.add_argument("--manual-dir", type=Path, default=None)
    data.add_argument("--data-dir", type=Path, default=None)
    data.add_argument("--image-size", type=int, default=None)
    data.add_argument("--num-examples", type=int, default=None)
    data.add_argument("--out", type=Path, default=None)
    data.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a dataset option, e.g. classes=3, frames_per_video=16")
    data.set_defaults(func=cmd_data)

    bench = sub.add_parser("bench", help="timing benchmarks; compare two runs")
    bench.add_argument("action", choices=("run", "compare"))
    bench.add_argument("files", nargs="*", help="compare: BASE.json NEW.json")
    bench.add_argument("--short", action="store_true", help="the quick CI subset")
    bench.add_argument("--out", default="results/bench/latest.json")
    bench.add_argument("-k", default=None, help="pytest -k expression to select benchmarks")
    bench.add_argument("--threshold", type=float, default=0.25)
    bench.set_defaults(func=cmd_bench)

    lst = sub.add_parser("list", help="registries, or the cells of a config")
    lst.add_argument("what", choices=("registries", "cells"), nargs="?", default="registries")
    lst.add_argument("--config", default="default")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
