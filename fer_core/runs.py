"""Run folders: runs/<task>/<name>/, with fresh names exp, exp2, exp3, ... and no silent overwrite."""
from __future__ import annotations

import re
from pathlib import Path


class RunExistsError(FileExistsError):
    """A named run folder exists and neither resume nor exist-ok was asked for."""


def next_free_name(parent: Path, stem: str = "exp") -> str:
    """exp, then exp2, exp3, ... (one past the highest taken, as ultralytics numbers them)."""
    taken = {p.name for p in parent.iterdir()} if parent.is_dir() else set()
    if stem not in taken:
        return stem
    numbers = [int(m.group(1)) for n in taken if (m := re.fullmatch(re.escape(stem) + r"(\d+)", n))]
    return f"{stem}{max(numbers + [1]) + 1}"


def run_folder(project: str | Path, name: str | None, resume: bool = False, exist_ok: bool = False,
               command: str = "fertune train") -> Path:
    """The folder a run writes to; refuses to reuse an existing named folder unless told how."""
    project = Path(project)
    if name is None:
        if resume:
            raise ValueError(f"--resume needs --name NAME: the run under {project} to continue")
        name = next_free_name(project)
    folder = project / name
    if resume:
        if not folder.is_dir():
            raise FileNotFoundError(f"cannot resume: {folder} does not exist; runs there: "
                                    f"{', '.join(sorted(p.name for p in project.iterdir())) if project.is_dir() else 'none'}")
        return folder
    if folder.exists() and any(folder.iterdir()) and not exist_ok:
        raise RunExistsError(
            f"{folder} already exists. Use `{command} ... --name {name} --resume` to continue it, "
            f"`--exist-ok` to write into it, or another --name (or none, for a fresh one)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
