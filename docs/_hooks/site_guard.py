"""MkDocs hook: the build empties its site folder first, so it only ever empties one that it built.

A folder that already holds files but no mark of a genlab docs build (a user's own `site/`) stops the build before
anything is deleted; the mark is written as soon as MkDocs has emptied the folder, so a build that fails later
still leaves a folder the next build may replace.
"""

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files

MARK = ".genlab-docs-site"


def on_pre_build(config) -> None:
    site = Path(config["site_dir"])
    if site.is_dir() and any(site.iterdir()) and not (site / MARK).is_file():
        raise PluginError(f"{site} holds files that no docs build wrote; building would delete them. Move them, or "
                          f"build elsewhere: mkdocs build --strict --site-dir OTHER_FOLDER")


def on_files(files: Files, config) -> Files:
    # on_files runs after MkDocs has emptied site_dir: mark the folder as a docs build's from here on
    site = Path(config["site_dir"])
    site.mkdir(parents=True, exist_ok=True)
    (site / MARK).write_text("written by mkdocs build (genlab docs); make docs replaces this folder\n")
    return files
