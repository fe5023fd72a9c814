"""Fill the generated blocks of docs/results/mt10_cpu_study.md (run by scripts/study_mt10_cpu.sh).

    python scripts/study_mt10_cpu_page.py PAGE ARCHIVE_DIR RESULTS_DIR

Blocks between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` are replaced:

- ``status``: runs finished / planned per method, read from the archive (what git holds);
- ``results``: the success table of RESULTS_DIR/report.md;
- ``stability``: the gradient-stability and wall-time tables of RESULTS_DIR/report.md.

Everything outside the blocks is left as it is.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

SEEDS = list(range(5))
# (archive folder, row label): the study's planned runs
PLANNED = [
    ("shared/uniform", "uniform (MT-SAC)"),
    ("shared/aligned-mtl", "aligned-mtl"),
    ("shared/pcgrad", "pcgrad"),
    ("shared/cagrad", "cagrad (c = 0.9)"),
    ("shared/nash-mtl", "nash-mtl"),
    ("multi-head/uniform", "multi-head uniform (MH-SAC)"),
]


def replace_block(text: str, name: str, content: str) -> str:
    pattern = re.compile(
        rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(<!-- END {re.escape(name)} -->)", re.S
    )
    if not pattern.search(text):
        raise SystemExit(f"study page: no block '{name}' (<!-- BEGIN {name} --> ... END) in page")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(2), text)


def finished_seeds(archive: Path, folder: str) -> list[int]:
    seeds = []
    for seed in SEEDS:
        status = archive / folder / f"seed_{seed}" / "status.json"
        try:
            if json.loads(status.read_text()).get("state") == "finished":
                seeds.append(seed)
        except (OSError, json.JSONDecodeError):
            continue
    return seeds


def status_block(archive: Path) -> str:
    lines = [
        f"Archived finished runs (`{archive}`), as of {time.strftime('%Y-%m-%d %H:%M')}:",
        "",
        "| Runs | Finished / planned | Finished seeds |",
        "|---|---:|---|",
    ]
    done = 0
    for folder, label in PLANNED:
        seeds = finished_seeds(archive, folder)
        done += len(seeds)
        shown = ", ".join(map(str, seeds)) or "none"
        lines.append(f"| {label} (`{folder}`) | {len(seeds)} / {len(SEEDS)} | {shown} |")
    total = len(PLANNED) * len(SEEDS)
    lines += ["", f"**{done} / {total} runs finished.**"]
    return "\n".join(lines)


def section(markdown: str, start: str, stop: str | None) -> str:
    """Lines of ``markdown`` from the line starting with ``start`` up to (not incl.) ``stop``."""
    lines = markdown.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.startswith(start)), None)
    if begin is None:
        return ""
    end = len(lines)
    if stop is not None:
        end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith(stop)), end)
    return "\n".join(lines[begin:end]).strip("\n")


def main(page: Path, archive: Path, results: Path) -> int:
    text = page.read_text()
    text = replace_block(text, "status", status_block(archive))
    report = results / "report.md"
    if report.is_file():
        markdown = report.read_text()
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.stat().st_mtime))
        head = "\n".join(
            line for line in markdown.splitlines()[:8] if line.startswith("- ")
        )  # protocol stamp and reported number
        table = section(markdown, "| Method | Seeds | Mean success", "## ")
        # the report's comparison with MT-SAC, one heading level down under "Results"
        differences = re.sub(r"^## ", "### ", section(markdown, "## Differences", "## "))
        text = replace_block(
            text,
            "results",
            f"From [`mt10_cpu_study/report.md`](mt10_cpu_study/report.md) ({stamp}; finished "
            f"runs only):\n\n{head}\n\n{table}\n\n{differences}".rstrip("\n"),
        )
        stability = section(markdown, "## Gradient stability", "## Plots")
        if stability:
            # under this page's own "Gradient stability" heading: drop the report's, and put
            # the other headings one level down
            stability = stability.split("\n", 1)[1].lstrip("\n") if "\n" in stability else ""
            stability = re.sub(r"^(#+) ", r"#\1 ", stability, flags=re.M)
            text = replace_block(text, "stability", stability)
    page.write_text(text)
    print(f"study page: updated {page}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
