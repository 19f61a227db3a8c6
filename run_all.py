"""Run the default matrix on the embedded synthetic data and write results/.

    python run_all.py            # resumes from runs/default.sqlite if it exists
    python run_all.py --fresh    # start the store anew (cached data/weights are reused)
"""

import argparse
import sys
from pathlib import Path

from dfjax.cli import main as dfjax

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--store", type=Path, default=Path("runs/default.sqlite"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    if args.fresh and args.store.exists():
        args.store.unlink()
    code = dfjax(["run", "--config", args.config, "--store", str(args.store)])
    dfjax(["report", "--store", str(args.store), "--out", str(args.out)])
    sys.exit(code)
