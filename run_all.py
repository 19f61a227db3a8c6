"""Run the default matrix on the embedded synthetic data and write results/.

    python run_all.py            # resumes from runs/default.sqlite if it exists
    python run_all.py --fresh    # start the store anew (cached data/weights are reused)
"""

import argparse
import sys
from pathlib import Path

from dfjax.cli import main as dfjax
from dfjax.cli import unwritable_folder


def write_model_table(config_name: str, out: Path) -> None:
    """results/models.md: the config's models plus mesoinception4 (the larger models
    take minutes to time on a 2-core CPU: `model_table_markdown` gives them on demand)."""
    import time

    from dfjax.configs import get_config
    from dfjax.reporting.model_table import model_table_markdown

    start = time.perf_counter()
    config = get_config(config_name)
    names = list(dict.fromkeys([m.name for m in config.models] + ["mesoinception4"]))
    size = config.datasets[0].image_size
    table = model_table_markdown(names, size)
    (out / "models.md").write_text(f"# Models\n\n{table}")
    print(f"model table: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="the named matrix to run")
    parser.add_argument("--store", type=Path, default=Path("runs/default.sqlite"),
                        help="the results store (resumed if it exists)")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="where the report is written")
    parser.add_argument("--fresh", action="store_true",
                        help="start the store anew (cached data and weights are reused)")
    args = parser.parse_args()
    for folder, what in ((args.out, "results folder (--out)"),
                         (args.store.parent, "store folder (--store)")):
        problem = unwritable_folder(folder)  # before hours of work, not after
        if problem is not None:
            sys.exit(f"error: {what} {problem}")
    if args.fresh and args.store.exists():
        args.store.unlink()
    code = dfjax(["run", "--config", args.config, "--store", str(args.store)])
    dfjax(["report", "--store", str(args.store), "--out", str(args.out)])
    dfjax(["report", "--history", "--out", str(args.out)])  # leaderboard/history.html
    write_model_table(args.config, args.out)
    sys.exit(code)
