"""`dfjax run | report | data | list | cache | bench | compare` -- parses arguments and
calls the library.

The environment is read by `dfjax.settings` only; this module resolves it once, at the
edge, and passes explicit values (directories, the CPU device count) down.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_STORE = Path("runs") / "dfjax.sqlite"

DESCRIPTION = """\
dfjax: the adversarial robustness of deepfake detectors, measured over a matrix of
dataset x model x training x defence x attack x budget. `dfjax COMMAND --help` lists
a command's options."""

EXAMPLES = """\
examples:
  dfjax run --config smoke --only attack=fgsm,pgd --set n_eval=32 --store runs/smoke.sqlite
  dfjax report --store runs/smoke.sqlite --out results
  dfjax data prepare real_vs_fake_140k --manual-dir ~/kaggle/140k --image-size 64
  dfjax list registries
  dfjax list cells --config default --store runs/dfjax.sqlite --quiet   (count, time estimate)
  dfjax cache list
  dfjax cache clear --detectors --stale
  dfjax bench compare results/bench/base.json results/bench/latest.json
  dfjax compare runs/base.sqlite runs/new.sqlite --out compare.md

environment (read by dfjax.settings; a command-line option wins over it):
  DFJAX_DATA_DIR        prepared datasets (default ~/.cache/dfjax/data)
  DFJAX_CHECKPOINT_DIR  trained detectors (default ~/.cache/dfjax/checkpoints)
  DFJAX_CPU_DEVICES     JAX CPU devices to split attack batches across (default: one per core)
  DFJAX_COMPILE_CACHE_DIR  compiled XLA programs kept by `dfjax run` (default
                        ~/.cache/dfjax/xla; "off": none)
"""


def _executor(args):
    """`run_matrix` (local), or the Ray executor with --address and --workers bound; raises
    ValueError for Ray options without `--executor ray`, RayExecutorError for Ray missing
    or an address that does not answer."""
    from dfjax.runner import run_matrix

    if args.executor == "local":
        if args.address is not None or args.workers is not None:
            raise ValueError("--address and --workers need --executor ray")
        return run_matrix
    from dfjax.runner.ray_cluster import check_address, import_ray
    from dfjax.runner.ray_executor import run_matrix_ray

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    import_ray()
    if args.address is not None:
        check_address(args.address)
    return functools.partial(run_matrix_ray, address=args.address, workers=args.workers)


def cmd_run(args) -> int:
    from dfjax import settings
    from dfjax.configs import get_config
    from dfjax.data._tfds import show_progress_bars
    from dfjax.runner import ConfigError, expand
    from dfjax.runner.expand import override, parse_only
    from dfjax.store import Store
    from dfjax.xla import use_compile_cache, use_cpu_cores

    show_progress_bars(not args.no_progress)
    try:
        # One JAX CPU device per core (or $DFJAX_CPU_DEVICES), to split attack batches.
        use_cpu_cores(settings.cpu_device_count())
        config = override(get_config(args.config), args.set)  # names a bad --set item
        only = parse_only(args.only)
        cells = expand(config, only)  # validates before anything runs
        execute = _executor(args)  # Ray installed and the cluster answering, before any work
    except (ConfigError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cache_dir = None if args.no_compile_cache else settings.compile_cache_dir(args.compile_cache)
    if args.executor == "ray":  # the workers compile, each keeping its programs there
        execute, cache = functools.partial(execute, compile_cache_dir=cache_dir), None
    else:
        cache = use_compile_cache(cache_dir) if cache_dir is not None else None
    start = time.perf_counter()
    with Store(args.store) as store:
        summary = execute(config, store, only=only,
                          data_dir=settings.data_dir(args.data_dir),
                          checkpoint_dir=settings.checkpoint_dir(args.checkpoint_dir),
                          progress=not args.no_progress, retrain=args.retrain)
    total = time.perf_counter() - start
    s = summary.seconds
    print(f"{config.name}: {len(cells)} cells: {summary.done} run, {summary.skipped} already "
          f"stored, {summary.failed} failed")
    if summary.stale:
        print(f"  {summary.stale} stored cells were made by other code: recomputed")
    print(f"time: data {s['data']:.1f} s, training {s['training']:.1f} s, attacks "
          f"{s['attacks']:.1f} s, total {total:.1f} s")
    if cache is not None:
        print(cache.summary())
    for cell_id, error in summary.failures:
        print(f"  failed {cell_id}: {error}")
    if summary.claimed_elsewhere:
        print(f"  {summary.claimed_elsewhere} cells left to another run (claimed); run again "
              "once it ends to check they are stored")
    for label, count, _ in summary.unavailable:  # the full message was logged before the run
        print(f"  not run: {count} cells of {label}: data not prepared (how to prepare it: "
              "above)")
    if summary.failed:
        return 1
    # Only cells without data left: exit 0 if the rest of the matrix is stored, else 2.
    return 2 if summary.unavailable and not summary.done + summary.skipped else 0


def unwritable_folder(folder: Path) -> str | None:
    """Why files cannot be written into `folder` (created when missing), or None. Tried for
    real, with a temporary file: a root user passes permission checks, not a read-only
    mount or a path under a regular file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"{folder}: cannot write there ({e.strerror or e})"
    return None


def cmd_report(args) -> int:
    from dfjax.reporting import write_report
    from dfjax.store import Store

    problem = unwritable_folder(Path(args.out))
    if problem is not None:  # before reading anything
        print(f"error: report folder {problem}; choose another --out", file=sys.stderr)
        return 2
    if args.history:  # no store needed: the page reads OUT's git history and OUT/bench/
        from dfjax.reporting.history import write_history

        print(write_history(Path(args.out)))
        return 0
    if not Path(args.store).exists():
        print(f"error: no results store at {args.store}; run `dfjax run` first", file=sys.stderr)
        return 2
    with Store(args.store) as store:
        written = write_report(store, Path(args.out))
    for path in written:
        print(path)
    return 0


def _dataset_spec(args):
    import ast

    from dfjax.config import DatasetSpec

    options = {}
    for item in args.option:
        if "=" not in item:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            options[key] = raw
    spec = DatasetSpec(name=args.name, options=options)
    if args.image_size is not None:
        spec = dataclasses.replace(spec, image_size=args.image_size)
    if args.num_examples is not None:
        spec = dataclasses.replace(spec, num_examples=args.num_examples)
    return spec


def cmd_data(args) -> int:
    from dfjax import settings
    from dfjax.data import DATASETS, load_dataset
    from dfjax.data._tfds import show_progress_bars
    from dfjax.registry import UnknownNameError

    show_progress_bars(not args.no_progress)
    try:
        DATASETS.get(args.name)
        spec = _dataset_spec(args)
        splits = load_dataset(spec, data_dir=settings.data_dir(args.data_dir),
                              manual_dir=args.manual_dir)
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


def registry_lines(title: str, registry) -> list[str]:
    """`title:` and then one line per entry: its name, its options with their defaults
    (`num_steps=10 loss='ce'`; `prefix*` for an accepted option prefix; `(no options)`)
    and its description, if it has one."""
    entries = registry.items()
    width = max((len(name) for name, _ in entries), default=0)
    lines = [f"{title}:"]
    for name, entry in entries:
        options = [f"{k}={v!r}" for k, v in entry.options.items()]
        options += [f"{p}*" for p in entry.option_prefixes]
        line = f"  {name:<{width}}  {' '.join(options) or '(no options)'}"
        lines.append(f"{line}  -- {entry.description}" if entry.description else line)
    return lines


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
            print("\n".join(registry_lines(title, registry)))
        print(f"configs: {', '.join(names())}")
        return 0
    from dfjax.configs import get_config
    from dfjax.runner import ConfigError, expand
    from dfjax.runner.expand import override, parse_only

    try:
        cells = expand(override(get_config(args.config), args.set), parse_only(args.only))
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = cells
    if args.store is not None:
        todo = _cells_to_run(cells, args.store)
        if todo is None:
            return 2
    if not args.quiet:
        for c in cells:
            print(f"{c.cell_id}  {c.dataset.label()} {c.model.label()} {c.training.label()} "
                  f"{c.defence.label()} {c.attack.label()} {c.attack.norm} "
                  f"delta={c.attack.delta:g}"
                  + ("" if c.source is None else f" transfer from {c.source.label()}"))
    stored = "" if args.store is None else f", {len(cells) - len(todo)} stored by the " \
        f"current code in {args.store}, {len(todo)} to run"
    print(f"{len(cells)} cells{stored}")
    return _print_estimate(todo, args.bench_dir)


def _cells_to_run(cells, store_path: Path):
    """The cells not stored as 'ok' by the current code in the store at `store_path`; None
    (after the error) when there is no store there."""
    from dfjax.runner.environment import evaluation_fingerprint
    from dfjax.store import Store

    if not Path(store_path).is_file():
        print(f"error: no results store at {store_path}", file=sys.stderr)
        return None
    with Store(store_path) as store:
        stored = store.result_fingerprints()
    return [c for c in cells if c.cell_id not in stored
            or stored[c.cell_id] != evaluation_fingerprint(c)]


def _print_estimate(cells, bench_dir: Path) -> int:
    """The time estimate of `cells` from the bench figures in `bench_dir`, calibrated on
    the reference run beside it (results/: the default matrix, as run_all.py runs it)."""
    from dfjax.configs import get_config
    from dfjax.runner import expand
    from dfjax.runner.estimate import describe, estimate, load_rates, load_reference

    try:
        rates = load_rates(bench_dir)
    except FileNotFoundError as e:
        print(f"no estimate: {e}")
        return 0
    reference = load_reference(Path(bench_dir).parent)
    try:
        reference_cells = expand(get_config("default")) if reference is not None else []
        result = estimate(cells, rates, reference, reference_cells)
    except Exception as e:  # noqa: BLE001 -- a model whose FLOPs XLA cannot count
        print(f"no estimate: {type(e).__name__}: {e}")
        return 0
    print("\n".join(describe(result, rates, reference)))
    return 0


def cmd_cache(args) -> int:
    from dfjax import settings
    from dfjax.caches import KINDS, clear_caches, human_size, list_caches

    roots = {"datasets": settings.data_dir(args.data_dir),
             "detectors": settings.checkpoint_dir(args.checkpoint_dir),
             "xla": settings.compile_cache_dir(args.compile_cache)}
    entries = list_caches(data_dir=roots["datasets"], checkpoint_dir=roots["detectors"],
                          compile_cache_dir=roots["xla"])
    if args.action == "list":
        for kind in KINDS:
            chosen = [e for e in entries if e.kind == kind]
            total = human_size(sum(e.size for e in chosen))
            print(f"{kind} in {roots[kind]}: {len(chosen)} entries, {total}")
            for e in chosen:
                print(f"  {e.state:<8} {human_size(e.size):>10}  {e.label}  {e.detail}")
        return 0
    kinds = [k for k in KINDS if getattr(args, k) or args.all]
    if not kinds:
        print("error: say what to clear: --datasets, --detectors, --xla or --all (with "
              "--stale: only entries made by other code)", file=sys.stderr)
        return 2
    chosen = [e for e in entries if e.kind in kinds
              and (not args.stale or e.state in ("stale", "orphaned"))]
    if args.dry_run:
        for e in chosen:
            print(f"would remove {e.kind} {e.label} ({human_size(e.size)})")
        return 0
    try:
        removed = clear_caches(chosen, roots=roots)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"removed {len(chosen)} entries ({len(removed)} paths, "
          f"{human_size(sum(e.size for e in chosen))})")
    return 0


def cmd_compare(args) -> int:
    from dfjax.reporting.compare import (
        CompareInputError,
        compare_runs,
        comparison_markdown,
        load_run,
        parse_track,
    )

    try:
        comparison = compare_runs(load_run(args.base), load_run(args.new), alpha=args.alpha,
                                  track=parse_track(args.track))
    except CompareInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = comparison_markdown(comparison)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 1 if comparison.regressed and args.fail_on_drop else 0


BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
BENCH_RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench"


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
    parser = argparse.ArgumentParser(prog="dfjax", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_parser(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    run = add_parser("run", "run a matrix into a results store; cells already stored are "
                            "skipped, so a killed run resumes")
    run.add_argument("--config", default="default", metavar="NAME",
                     help="a named matrix in dfjax/configs/ (`dfjax list` names them) or a "
                          "path/to/config.py defining get_config() (default: %(default)s)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field (n_eval=128) or a field of every spec on "
                          "an axis (dataset.num_examples=400); repeatable")
    run.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2",
                     help="run only the cells whose AXIS (dataset, model, training, defence, "
                          "attack) is one of the names; repeatable")
    run.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="PATH",
                     help="the SQLite results store to append to (default: %(default)s)")
    run.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                     help="where datasets are prepared (default: $DFJAX_DATA_DIR, else "
                          "~/.cache/dfjax/data)")
    run.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                     help="where trained detectors are cached (default: "
                          "$DFJAX_CHECKPOINT_DIR, else ~/.cache/dfjax/checkpoints)")
    run.add_argument("--compile-cache", type=Path, default=None, metavar="DIR",
                     help="XLA's persistent compilation cache: a second run loads compiled "
                          "programs instead of compiling (default: "
                          "$DFJAX_COMPILE_CACHE_DIR, else ~/.cache/dfjax/xla)")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="compile everything anew, keeping nothing on disk")
    run.add_argument("--no-progress", action="store_true",
                     help="print no progress bars (dfjax's or tensorflow-datasets')")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="run the cells in this process (local) or on a Ray cluster (ray: "
                          "pip install 'dfjax[ray]'; docs/ray.md) (default: %(default)s)")
    run.add_argument("--address", default=None, metavar="ADDR",
                     help="with --executor ray: the cluster's HOST:PORT (as `ray start --head` "
                          "prints) or 'auto' (default: a new Ray instance on this machine)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="with --executor ray: Ray workers, each pinned to its share of a "
                          "node's cores (default: one per CPU of the cluster)")
    run.add_argument("--retrain", action="store_true",
                     help="train the run's detectors afresh instead of loading them from the "
                          "checkpoint cache (a checkpoint trained by other code is retrained "
                          "anyway)")
    run.set_defaults(func=cmd_run)

    report = add_parser("report", "tables (Markdown, CSV, JSON), plots and the leaderboard "
                                  "from a results store")
    report.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="PATH",
                        help="the SQLite results store to read (default: %(default)s)")
    report.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                        help="the folder to write the report into (default: %(default)s)")
    report.add_argument("--history", action="store_true",
                        help="write only the history page OUT/leaderboard/history.html: "
                             "robust accuracies of OUT/results.json at every git revision "
                             "that changed it and the timings of OUT/bench/*.json (no store "
                             "needed)")
    report.set_defaults(func=cmd_report)

    data = add_parser("data", "prepare a dataset (once, cached by spec), or save a picture "
                              "of its real and fake examples")
    data.add_argument("action", choices=("prepare", "show"),
                      help="prepare: build it and print its split sizes; show: save a grid "
                           "of examples")
    data.add_argument("name", help="a registered dataset (`dfjax list` names them)")
    data.add_argument("--manual-dir", type=Path, default=None, metavar="DIR",
                      help="where the downloaded files of a manual dataset are (default: "
                           "<data dir>/manual/<name>/)")
    data.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                      help="where datasets are prepared (default: $DFJAX_DATA_DIR, else "
                           "~/.cache/dfjax/data)")
    data.add_argument("--image-size", type=int, default=None, metavar="N",
                      help="side of the square images in pixels (default: the spec's)")
    data.add_argument("--num-examples", type=int, default=None, metavar="N",
                      help="how many examples to prepare (default: the spec's)")
    data.add_argument("--out", type=Path, default=None, metavar="FILE.png",
                      help="show: the PNG to write (default: NAME.png)")
    data.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a dataset option, e.g. classes=3, frames_per_video=16; repeatable")
    data.add_argument("--no-progress", action="store_true",
                      help="print no progress bars (tensorflow-datasets' preparation bars)")
    data.set_defaults(func=cmd_data)

    bench = add_parser("bench", "timing benchmarks (pytest-benchmark); compare two runs")
    bench.add_argument("action", choices=("run", "compare"),
                       help="run: time the bench/ suites; compare: flag regressions between "
                            "two runs")
    bench.add_argument("files", nargs="*", help="compare: BASE.json NEW.json")
    bench.add_argument("--short", action="store_true", help="run: the quick CI subset")
    bench.add_argument("--out", default="results/bench/latest.json", metavar="FILE.json",
                       help="run: the pytest-benchmark JSON to write (default: %(default)s)")
    bench.add_argument("-k", default=None, metavar="EXPR",
                       help="run: pytest -k expression selecting benchmarks")
    bench.add_argument("--threshold", type=float, default=0.25, metavar="FRACTION",
                       help="compare: the slow-down (a fraction of the normalised median) "
                            "counted as a regression (default: %(default)s)")
    bench.set_defaults(func=cmd_bench)

    compare = add_parser("compare", "regression test of detectors: two runs compared cell "
                                    "by cell (paired McNemar test, Holm-corrected); exit 1 "
                                    "when a tracked robust accuracy drops significantly")
    compare.add_argument("base", type=Path, help="the reference run: a results store "
                                                 "(.sqlite) or a results.json")
    compare.add_argument("new", type=Path, help="the run under test, likewise")
    compare.add_argument("--alpha", type=float, default=0.05, metavar="A",
                         help="family-wise false-alarm rate over the tracked cells (Holm) "
                              "(default: %(default)s)")
    compare.add_argument("--track", action="append", default=[], metavar="AXIS=V1,V2",
                         help="track only the cells whose AXIS (dataset, model, training, "
                              "defence, attack, delta) is one of the values; repeatable "
                              "(default: every cell's robust accuracy)")
    compare.add_argument("--out", type=Path, default=None, metavar="FILE.md",
                         help="also write the Markdown report there")
    compare.add_argument("--fail-on-drop", action=argparse.BooleanOptionalAction, default=True,
                         help="exit 1 on a significant drop or a tracked cell failing only in "
                              "new (default: on; --no-fail-on-drop only reports)")
    compare.set_defaults(func=cmd_compare)

    lst = add_parser("list", "the registries (every entry with its options and defaults) and "
                             "configs, or the cells of a config")
    lst.add_argument("what", choices=("registries", "cells"), nargs="?", default="registries",
                     help="registries: every axis's entries; cells: the cells of --config")
    lst.add_argument("--config", default="default", metavar="NAME",
                     help="cells: the named matrix (or path/to/config.py) to expand "
                          "(default: %(default)s)")
    lst.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="cells: override a config field, as `dfjax run --set`; repeatable")
    lst.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2",
                     help="cells: only these cells, as `dfjax run --only`; repeatable")
    lst.add_argument("--store", type=Path, default=None, metavar="PATH",
                     help="cells: count and estimate only the cells this results store "
                          "does not hold (made by the current code)")
    lst.add_argument("--bench-dir", type=Path, default=BENCH_RESULTS, metavar="DIR",
                     help="cells: the bench JSON files the time estimate uses (the newest "
                          "with FLOP counts; default: %(default)s)")
    lst.add_argument("--quiet", action="store_true",
                     help="cells: print only the count and the estimate, not every cell")
    lst.set_defaults(func=cmd_list)

    cache = add_parser("cache", "list or clear what dfjax caches on disk: prepared datasets, "
                                "trained detectors, compiled XLA programs")
    cache.add_argument("action", choices=("list", "clear"),
                       help="list: every entry, its size and whether the current code made "
                            "it; clear: remove the kinds named")
    for kind, what in (("datasets", "prepared dataset copies (never the manual downloads)"),
                       ("detectors", "trained detector checkpoints"),
                       ("xla", "compiled XLA programs")):
        cache.add_argument(f"--{kind}", action="store_true", help=f"clear: {what}")
    cache.add_argument("--all", action="store_true", help="clear: all three")
    cache.add_argument("--stale", action="store_true",
                       help="clear: only entries made by other code (stale) or that no "
                            "current spec reads (orphaned)")
    cache.add_argument("--dry-run", action="store_true",
                       help="clear: print what would be removed, remove nothing")
    cache.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                       help="the datasets cache (default: $DFJAX_DATA_DIR, else "
                            "~/.cache/dfjax/data)")
    cache.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                       help="the detectors cache (default: $DFJAX_CHECKPOINT_DIR, else "
                            "~/.cache/dfjax/checkpoints)")
    cache.add_argument("--compile-cache", type=Path, default=None, metavar="DIR",
                       help="the XLA cache (default: $DFJAX_COMPILE_CACHE_DIR, else "
                            "~/.cache/dfjax/xla)")
    cache.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dfjax.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StoreError as e:  # an unusable --store file: named, before any work
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
