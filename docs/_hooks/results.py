"""MkDocs hook: publish the committed results (benchmarks/results/, experiments/results/) with the docs.

The tables, figures and reports stay where the commands write them; this hook adds them to the site under the
same paths, so a docs page links `benchmarks/results/families.md` and MkDocs checks that link like any other.
"""

from pathlib import Path

from mkdocs.structure.files import File, Files

RESULT_FOLDERS = ("benchmarks/results", "experiments/results")
PUBLISHED_SUFFIXES = {".md", ".png", ".csv", ".sh"}


def on_files(files: Files, config) -> Files:
    repo_root = Path(config["config_file_path"]).parent
    for folder in RESULT_FOLDERS:
        for path in sorted((repo_root / folder).rglob("*")):
            if path.is_file() and path.suffix in PUBLISHED_SUFFIXES:
                relative = path.relative_to(repo_root).as_posix()
                files.append(File(relative, str(repo_root), config["site_dir"], config["use_directory_urls"]))
    return files
