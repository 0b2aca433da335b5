"""What a command may write: new files and folders, or ones that carry genlab's own mark. The one place.

A user's file is never deleted or overwritten. genlab marks what it writes so that a later command can tell its own
outputs from the user's:
- a folder of sample PNGs holds a manifest, `.genlab-folder.json`, naming the command and the files it wrote;
- a JSON result has a top-level "written_by" key;
- a PNG has a "genlab" text chunk (images.save_png and the figures' savefig);
- a Markdown or CSV table has the header (or, for `genlab table`'s Markdown, the command) of the command that wrote
  it: that command passes its own `mark` to check_file_out.
A command writes into an existing file or folder only when it carries that mark (or, for a folder, is empty), and
refuses otherwise with the out= to use instead. Checks create nothing: a refused command leaves no folder behind.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from genlab.errors import GenlabError
from genlab.images import PNG_MARK, png_names, save_png_folder

FOLDER_MANIFEST = ".genlab-folder.json"
WRITTEN_BY = "written_by"  # the JSON results' key
SAMPLE_NAME = re.compile(r"^\d{6}\.png$")  # images.png_names: what genlab names the PNGs of a folder


def check_writable(target: Path) -> None:
    """Fail before any work, not after, when `target` (a file or folder, existing or not) cannot be written; creates
    nothing: the nearest existing folder above it takes a temporary file."""
    existing = target if target.is_dir() else target.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise GenlabError(f"cannot write to {target}: {existing} is a file, not a folder; choose another out=PATH.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise GenlabError(f"cannot write to {existing} ({exc.strerror}); choose another out=PATH.") from None


def png_mark(path: Path) -> str | None:
    """The command recorded in a PNG's genlab text chunk; None when it has none (or is not a PNG)."""
    try:
        with Image.open(path) as img:
            return img.info.get(PNG_MARK) if img.format == "PNG" else None
    except (UnidentifiedImageError, OSError):
        return None


def json_mark(path: Path) -> str | None:
    """The "written_by" of a genlab JSON result; for results written before the key existed, the command whose
    fields it has (eval: "metrics" and "extractor"). None for any other file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if WRITTEN_BY in data:
        return str(data[WRITTEN_BY])
    return "genlab eval" if {"metrics", "extractor"} <= set(data) else None


def first_line_of(path: Path) -> str | None:
    """The first line of a text file (None when it cannot be read as text): where genlab's Markdown and CSV tables
    carry their header, which is their mark."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline()
    except (OSError, UnicodeDecodeError):
        return None


MARKS: dict[str, Callable[[Path], str | None]] = {".png": png_mark, ".json": json_mark}


def check_file_out(path: Path, hint: str, mark: Callable[[Path], str | None] | None = None) -> None:
    """Refuse to overwrite an existing file that genlab did not write (`mark` reads genlab's mark from it; by default
    the one of its suffix). `hint`: the out= to suggest instead."""
    if path.is_dir():
        raise GenlabError(f"out={path} is a folder; give a file name. {hint}")
    if not path.exists():
        check_writable(path)
        return
    read_mark = mark or MARKS.get(path.suffix.lower())
    if read_mark is None or read_mark(path) is None:
        raise GenlabError(f"{path} already exists and genlab did not write it: it is left as it is. {hint}")
    check_writable(path)


def folder_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a folder genlab wrote; None when there is none or it is unreadable."""
    try:
        data = json.loads((folder / FOLDER_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


def owned_files(folder: Path, legacy_owner: Path | None = None) -> list[Path] | None:
    """The files of `folder` that genlab wrote, which a new write may replace; None when the folder holds anything
    genlab did not write (or is not a folder). An absent or empty folder owns nothing and holds nothing: [].

    `legacy_owner`: a JSON result whose "samples_dir" / "samples.scored_dir" names this folder, so that a folder
    written before manifests existed (only 000000.png, ...) is still recognised as genlab's.
    """
    if not folder.exists():
        return []
    if not folder.is_dir():
        return None
    entries = [p for p in folder.iterdir() if p.name != FOLDER_MANIFEST]
    manifest = folder_manifest(folder)
    if manifest is not None:
        listed = {str(name) for name in manifest["files"]}
        return [p for p in entries if p.name in listed] if all(p.name in listed for p in entries) else None
    if not entries:
        return []
    if legacy_owner is not None and all(SAMPLE_NAME.match(p.name) and p.is_file() for p in entries):
        if _names_folder(legacy_owner, folder):
            return entries
    return None


def _names_folder(result: Path, folder: Path) -> bool:
    """The JSON result `result` records `folder` as the folder of its samples."""
    try:
        data = json.loads(result.read_text())
        named = data.get("samples_dir") or (data.get("samples") or {}).get("scored_dir")
        # Only folders without a manifest get here, written by genlab versions that recorded absolute paths.
        return named is not None and Path(named).resolve() == folder.resolve()
    except (OSError, ValueError, AttributeError):
        return False


def check_folder_out(folder: Path, hint: str, legacy_owner: Path | None = None) -> None:
    """Refuse a folder that holds anything genlab did not write (see owned_files); creates nothing."""
    if owned_files(folder, legacy_owner) is None:
        what = "is a file" if folder.exists() and not folder.is_dir() else "holds files that genlab did not write"
        raise GenlabError(f"{folder} {what}: it is left as it is. {hint}")
    check_writable(folder)


def start_folder(folder: Path, command: str, names: list[str], legacy_owner: Path | None = None) -> None:
    """Make `folder` ready for the files `names`: create it, delete the files an earlier genlab write left there
    (and only those), and write the manifest first, so that an interrupted write still leaves a folder genlab
    recognises. Refuses like check_folder_out."""
    old = owned_files(folder, legacy_owner)
    if old is None:
        check_folder_out(folder, "", legacy_owner)  # raises
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {WRITTEN_BY: command, "files": sorted(set(names) | {p.name for p in old or []})}
    (folder / FOLDER_MANIFEST).write_text(json.dumps(manifest) + "\n")
    for path in old or []:
        path.unlink(missing_ok=True)
    (folder / FOLDER_MANIFEST).write_text(json.dumps({WRITTEN_BY: command, "files": sorted(names)}) + "\n")


def write_png_folder(images: Tensor, folder: Path, command: str, legacy_owner: Path | None = None) -> None:
    """One PNG per image into `folder`, replacing only what an earlier genlab write left there (start_folder)."""
    start_folder(folder, command, png_names(len(images)), legacy_owner)
    save_png_folder(images, folder)


def write_json(path: Path, data: dict[str, Any], command: str) -> None:
    """A JSON result with its "written_by" mark (check_file_out beforehand)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({WRITTEN_BY: command, **data}, indent=2) + "\n")


def free_name(path: Path, taken: Callable[[Path], bool] = Path.exists) -> Path:
    """`path`, or the first of path-2, path-3, ... (before the suffix) that is not `taken`: the out= to suggest."""
    candidate, n = path, 2
    while taken(candidate):
        candidate, n = path.with_name(f"{path.stem}-{n}{path.suffix}"), n + 1
    return candidate


def check_eval_out(out: Path, source: Path | None = None) -> Path:
    """The samples folder of the eval result `out` (<out stem>_samples/ beside it), once both may be written: the
    JSON is new or genlab's, the folder is new, empty or genlab's, and it is not `source`, the folder being scored."""
    samples_dir = out.with_name(out.stem + "_samples")

    def taken(json_path: Path) -> bool:
        folder = json_path.with_name(json_path.stem + "_samples")
        return json_path.exists() or folder.exists() or (source is not None and folder.resolve() == source.resolve())

    hint = f"Choose another out=, e.g. out={free_name(out, taken)}."
    if source is not None and samples_dir.resolve() == source.resolve():
        raise GenlabError(f"out={out} would write the scored copies of the images into {samples_dir}, which is "
                          f"samples={source} itself: your images are left as they are. {hint}")
    check_file_out(out, hint)
    check_folder_out(samples_dir, hint, legacy_owner=out)
    return samples_dir
