"""What machine and software a benchmark ran on, for its report."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def machine() -> dict:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    # Not `nproc`: it reports OMP_NUM_THREADS, which the benchmarks set to 1 for their children.
    nproc = str(os.cpu_count())
    cpu, ram = platform.processor() or "unknown", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
                break
    except OSError:
        pass
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"nproc": nproc, "cpu": cpu, "ram": ram, "os": platform.platform(),
            "python": platform.python_version(), "torch": version("torch"),
            "stable-baselines3": version("stable-baselines3"), "mujoco": version("mujoco"),
            "gymnasium": version("gymnasium"), "prefrl": version("prefrl"), "git": commit}


def write_results(out: Path, title: str, rows: list[dict], columns: dict[str, str], notes: tuple[str, ...] = ()) -> str:
    """Write ``out/results.json`` (command, machine, rows) and ``out/results.md`` (a header, then
    a table of ``rows`` with ``columns``: heading → row key); returns the markdown."""
    import json
    import sys
    from datetime import datetime, timezone

    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    info = machine()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"command": command, "machine": info, "rows": rows}, indent=2))
    lines = [f"# {title}", "", f"- command: `{command}`",
             f"- written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}", f"- machine: {info}",
             *[f"- {note}" for note in notes], "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[key]) for key in columns.values()) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    return text
