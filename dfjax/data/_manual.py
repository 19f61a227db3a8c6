"""Manually downloaded datasets (the TFDS `manual_dir` convention) and what to say when
one is missing.

The user downloads a dataset (e.g. from Kaggle), unpacks it, and points
`dfjax data prepare NAME --manual-dir DIR` (or `load_dataset(..., manual_dir=DIR)`)
at it. Without `--manual-dir`, `<data_dir>/manual/<name>` is looked at. When the
folder is missing, empty, or laid out otherwise, the error names the download page
and draws the layout expected.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from dfjax import settings
from dfjax.config import DatasetSpec
from dfjax.data._tfds import ArrayBuilder, copies_note

MAX_LABEL_FILE_BYTES = 256 << 20  # a label CSV or metadata.json larger than this is refused


class DataFileError(ValueError):
    """A label file of a user's download (a CSV, a metadata.json) cannot be used at all.

    `path` names the file, `problem` says what is wrong with it; the message holds both.
    """

    def __init__(self, path: Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def read_label_text(path: Path) -> str:
    """A label file's text: UTF-8 (a byte-order mark is dropped); bytes that are not UTF-8
    become lone surrogates (`surrogateescape`), for the caller to skip the rows holding
    them. Raises DataFileError for a file that is not a regular file, is larger than
    MAX_LABEL_FILE_BYTES, or cannot be read."""
    path = Path(path)
    try:
        if not path.is_file():
            raise DataFileError(path, "is not a regular file")
        size = path.stat().st_size
        if size > MAX_LABEL_FILE_BYTES:
            raise DataFileError(path, f"is {size} bytes, over the {MAX_LABEL_FILE_BYTES}-byte "
                                      "limit for a label file")
        data = path.read_bytes()
    except OSError as e:
        raise DataFileError(path, f"cannot be read ({e.strerror or e})") from None
    return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def has_undecodable_bytes(text: str) -> bool:
    """True if `text` holds a byte that was not UTF-8 (a lone surrogate from
    `read_label_text`)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def prepare_command(spec: DatasetSpec, data_dir: Path) -> str:
    """The `dfjax data prepare` line that prepares `spec` into `data_dir` from a download
    in DIR (`--data-dir` only when not the default; a seed other than 0 has no flag: the
    line says so)."""
    parts = ["dfjax data prepare", spec.name, "--manual-dir DIR",
             f"--image-size {spec.image_size}", f"--num-examples {spec.num_examples}"]
    parts += ["--option " + shlex.quote(f"{k}={v if isinstance(v, str) else repr(v)}")
              for k, v in spec.options]
    if Path(data_dir) != settings.data_dir():
        parts.append("--data-dir " + shlex.quote(str(data_dir)))
    if spec.seed != 0:
        parts.append(f"  # seed {spec.seed}: `dfjax run` prepares it from "
                     f"{Path(data_dir) / 'manual' / spec.name}")
    return " ".join(parts)


def missing_data_error(name: str, *, reason: str, homepage: str, layout: str,
                       manual_dir: Path | None, note: str = "",
                       command: str | None = None) -> FileNotFoundError:
    """A FileNotFoundError telling the user what to download, where, how to lay it out and
    the command that prepares it (default: `dfjax data prepare NAME --manual-dir DIR`);
    `note` (e.g. the prepared copies found) ends it."""
    where = f" (looked in {manual_dir})" if manual_dir is not None else ""
    command = command or f"dfjax data prepare {name} --manual-dir DIR"
    return FileNotFoundError(
        f"{name}: {reason}{where}.\n"
        f"Download it from {homepage}, unpack it, and run\n"
        f"  {command}\n"
        f"where DIR has this layout:\n{layout}" + (f"\n{note}" if note else ""))


class ManualBuilder(ArrayBuilder, skip_registration=True):
    """An ArrayBuilder reading a user's download. Subclasses set `layout` (text drawing
    of the expected tree) and implement `check_layout()` (raise `self.missing(reason)`
    or ValueError for a layout that cannot be read)."""

    layout: str = ""

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None):
        self.root_data_dir = Path(data_dir)
        if manual_dir is None:
            manual_dir = self.root_data_dir / "manual" / spec.name
        super().__init__(spec=spec, data_dir=data_dir, manual_dir=manual_dir)

    def missing(self, reason: str) -> FileNotFoundError:
        return missing_data_error(self.spec.name, reason=reason, homepage=self.homepage,
                                  layout=self.layout, manual_dir=self.manual_path,
                                  note=copies_note(self.spec, self.root_data_dir),
                                  command=prepare_command(self.spec, self.root_data_dir))

    def missing_folder(self) -> str | None:
        """Why the manual folder cannot be prepared from, if it is missing or empty."""
        path = self.manual_path
        if path is None or not path.is_dir():
            return "the manual download folder does not exist"
        if not any(path.iterdir()):
            return "the manual download folder is empty"
        return None

    def missing_inputs(self) -> str | None:
        """The missing-data message when the manual folder is missing or empty (its layout
        is checked only when preparing)."""
        reason = self.missing_folder()
        return None if reason is None else str(self.missing(reason))

    def before_generate(self) -> None:
        reason = self.missing_folder()
        if reason is not None:
            raise self.missing(reason)
        self.check_layout()

    def check_layout(self) -> None:
        """Hook: raise when the manual dir does not hold the expected layout."""

    def _examples(self, split: str):
        """As ArrayBuilder's, but a split left without examples (TFDS cannot write one)
        is a clear error naming what was skipped."""
        count = 0
        for item in super()._examples(split):
            count += 1
            yield item
        if count == 0:
            raise ValueError(
                f"{self.spec.name}: the {split} split has no usable examples in "
                f"{self.manual_path}; skipped: {self.report.get(split, {}).get('skipped', {})}")
