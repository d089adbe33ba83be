"""`legkit report`: one self-contained HTML page (and SUMMARY.md beside it) for one run or several.

    OUT/report.html   summary table, validation, plots and a video, all embedded (data: URIs),
                      so the one file can be mailed or attached anywhere
    OUT/SUMMARY.md    the same table and the plots as Markdown, linking the files below
    OUT/plots/*.png   the training curves (legkit.media.plots); several runs share overlaid axes
    OUT/videos/*.mp4  a video of each run's final policy
    OUT/evaluations.json  the per-checkpoint evaluations behind the evaluation plot

Given the parent folders of `legkit train --seeds` instead, the report aggregates each over its seeds
(legkit.evaluate.aggregate): mean, std, 95% bootstrap CI and IQM of the final evaluations and of the time to
the task's success bar, one row per seed, and learning curves with bands (plots/seeds.png); OUT/aggregate.json
holds the numbers.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Callable

from legkit import LegkitError, __version__
from legkit.media.plots import RunData, evaluate_checkpoints, load_run, plot_runs
from legkit.media.video import VideoSpec, video_of_policy
from legkit.train.runs import checkpoints, find_policy

PLOT_TITLES = {
    "training": "Episode reward, length and falls",
    "reward_terms": "Reward terms",
    "curriculum": "Curriculum",
    "evaluation": "Evaluation over training",
}


# -- the summary table ------------------------------------------------------------------------------

def _fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    s = int(round(float(seconds)))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else (f"{s // 60} min {s % 60:02d} s" if s >= 60
                                                                          else f"{s} s")


def validation_summary(run: RunData) -> str:
    """'passed 12/12', 'FAILED 10/12' or '—' (no validate.json)."""
    v = run.validation
    if not v:
        return "—"
    checks = v.get("checks") or []
    passed = sum(bool(c.get("passed")) for c in checks)
    word = "passed" if v.get("passed") else "FAILED"
    return f"{word} {passed}/{len(checks)}" if checks else word


COLUMNS = ("run", "robot", "task", "steps", "wall time", "forward velocity (m/s)", "command (m/s)",
           "tracking RMS (m/s)", "survival", "base height (m)", "energy (J/m)", "validation")


def summary_row(run: RunData) -> list[str]:
    """One row of the summary table, as display strings in COLUMNS order."""
    m = (run.eval or {}).get("metrics", {})
    task = run.meta.get("task") or run.config.get("task_name")
    robot = run.meta.get("robot") or (run.config.get("task") or {}).get("robot")
    step = run.meta.get("step")
    return [run.name, _fmt(robot), _fmt(task), f"{step:,}" if isinstance(step, int) else "—",
            _duration(run.meta.get("wall_time_s")), _fmt(m.get("mean_forward_velocity")),
            _fmt(m.get("mean_command_velocity")), _fmt(m.get("velocity_tracking_rms"), 3),
            _fmt(m.get("survival_rate"), 3), _fmt(m.get("mean_base_height"), 3),
            _fmt(m.get("energy_per_metre_J"), 0), validation_summary(run)]


# -- writing ----------------------------------------------------------------------------------------

def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1300px;
       padding: 0 1rem; color: #1d2330; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.meta { color: #667; font-size: .9rem; }
table { border-collapse: collapse; font-size: .9rem; width: 100%; }
th, td { border: 1px solid #d5d9e0; padding: .35rem .55rem; text-align: right; }
th { background: #eef1f6; } td:first-child, th:first-child { text-align: left; }
td.fail { color: #b00020; font-weight: 600; } td.pass { color: #1b7a33; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #e3e6eb; }
figcaption { color: #556; font-size: .9rem; }
.videos { display: flex; flex-wrap: wrap; gap: 1rem; } .videos figure { flex: 1 1 480px; max-width: 860px; margin: 0; }
video { width: 100%; background: #222; }
"""

# Records in the page itself whether the browser could decode each video (read by the CI check).
_JS = """
for (const v of document.querySelectorAll('video')) {
  const mark = () => { v.dataset.ready = 'yes'; v.dataset.duration = v.duration.toFixed(2);
                       v.dataset.width = v.videoWidth; v.dataset.height = v.videoHeight; };
  if (v.readyState >= 1) mark(); else v.addEventListener('loadedmetadata', mark);
  v.addEventListener('error', () => { v.dataset.ready = 'error'; });
}
for (const img of document.querySelectorAll('img')) {
  const mark = () => { img.dataset.width = img.naturalWidth; };
  if (img.complete) mark(); else img.addEventListener('load', mark);
}
"""


def render_html(runs: list[RunData], plots: dict[str, Path], videos: dict[str, Path], notes: list[str]) -> str:
    e = html.escape
    title = f"legkit report: {runs[0].name}" if len(runs) == 1 else f"legkit report: {len(runs)} runs compared"
    rows = []
    for run in runs:
        cells = summary_row(run)
        tds = []
        for col, cell in zip(COLUMNS, cells):
            cls = (' class="pass"' if cell.startswith("passed") else ' class="fail"' if cell.startswith("FAILED")
                   else "") if col == "validation" else ""
            tds.append(f"<td{cls}>{e(cell)}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">generated {e(time.strftime("%Y-%m-%d %H:%M"))} by legkit {e(__version__)}; '
        "evaluation columns come from each run's eval.json (deterministic episodes), validation from validate.json</p>",
        '<h2 id="summary-title">Summary</h2>',
        '<table id="summary"><thead><tr>' + "".join(f"<th>{e(c)}</th>" for c in COLUMNS) + "</tr></thead>",
        "<tbody>" + "".join(rows) + "</tbody></table>",
    ]
    failed = [(run, c) for run in runs for c in (run.validation or {}).get("checks", []) if not c.get("passed")]
    if failed:
        parts.append('<h2>Failed validation checks</h2><table id="validation"><thead><tr><th>run</th><th>scenario</th>'
                     "<th>check</th><th>value</th><th>threshold</th></tr></thead><tbody>")
        for run, c in failed:
            parts.append(f"<tr><td>{e(run.name)}</td><td>{e(str(c.get('scenario', '')))}</td>"
                         f"<td>{e(str(c.get('name', '')))}</td><td>{e(_fmt(c.get('value'), 3))}</td>"
                         f"<td>{e(str(c.get('threshold', '')))}</td></tr>")
        parts.append("</tbody></table>")
    if videos:
        parts.append('<h2>Video</h2><div class="videos">')
        for i, (name, path) in enumerate(videos.items()):
            parts.append(f'<figure><video id="video-{i}" controls autoplay muted loop playsinline preload="auto" '
                         f'src="{_data_uri(path, "video/mp4")}"></video>'
                         f"<figcaption>{e(name)}: final policy, deterministic, from where the task resets the "
                         "robot</figcaption></figure>")
        parts.append("</div>")
    parts.append('<h2 id="plots-title">Plots</h2>')
    if not plots:
        parts.append("<p>No training curves: these folders have no episodes.csv or TensorBoard logs.</p>")
    for name, path in plots.items():
        caption = PLOT_TITLES.get(name, name)
        parts.append(f'<figure id="plot-{e(name)}"><img alt="{e(caption)}" src="{_data_uri(path, "image/png")}">'
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


def render_markdown(runs: list[RunData], plots: dict[str, Path], videos: dict[str, Path], out: Path,
                    notes: list[str]) -> str:
    def md(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = [f"# legkit report: {runs[0].name if len(runs) == 1 else f'{len(runs)} runs'}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} by legkit {__version__}. "
             "Evaluation columns: eval.json (deterministic episodes); validation: validate.json.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(md(c) for c in summary_row(run)) + " |" for run in runs]
    for name, path in videos.items():
        lines += ["", f"Video of {name}: [{path.relative_to(out)}]({path.relative_to(out)})"]
    for name, path in plots.items():
        lines += ["", f"## {PLOT_TITLES.get(name, name)}", "", f"![{name}]({path.relative_to(out)})"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _html_table(table_id: str, columns, rows) -> str:
    """An HTML table of display strings, escaped."""
    e = html.escape
    return (f'<table id="{e(table_id)}"><thead><tr>' + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")


def build_seed_report(folders: list[str], out: Path) -> Path:
    """Write report.html, SUMMARY.md, plots/seeds.png and aggregate.json for seed groups; returns report.html."""
    from legkit.evaluate.aggregate import STATS_COLUMNS, format_group, load_seed_group, stats_rows
    from legkit.media.plots import plot_seed_bands

    groups = [load_seed_group(Path(f)) for f in folders]
    out.mkdir(parents=True, exist_ok=True)
    (out / "aggregate.json").write_text(json.dumps([g.to_json() for g in groups], indent=2) + "\n")
    band = plot_seed_bands(groups, out / "plots" / "seeds.png")
    e = html.escape
    title = f"legkit report: {groups[0].name}" if len(groups) == 1 else f"legkit report: {len(groups)} seed groups"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
             f'<p class="meta">generated {e(time.strftime("%Y-%m-%d %H:%M"))} by legkit {e(__version__)}; final '
             "metrics from each seed's eval.json; time to success from its periodic evaluations (evaluations.csv); "
             "95% CI: percentile bootstrap of the mean over seeds; IQM: mean without the lowest and highest "
             "quarter</p>"]
    md = [f"# {title}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M')} by legkit {__version__}.", ""]
    for k, g in enumerate(groups):
        rows = stats_rows(g)
        parts += [f'<h2>{e(g.name)}</h2>', f'<p class="meta">{e(str(g.folder))}: task {e(str(g.task))}, '
                  f"{len(g.runs)} seeds; success bar: {e(g.bar)}</p>", _html_table(f"aggregate-{k}", STATS_COLUMNS, rows)]
        seed_cols = ("seed", "run", "forward velocity (m/s)", "tracking RMS (m/s)", "survival", "time to success")
        seed_rows = [[str(r.seed), r.folder.name, _fmt(r.metrics.get("mean_forward_velocity"), 3),
                      _fmt(r.metrics.get("velocity_tracking_rms"), 3), _fmt(r.metrics.get("survival_rate"), 3),
                      f"{r.time_steps:,} steps ({_duration(r.time_s)})" if r.time_steps is not None
                      else f"not reached in {r.evaluated_to:,} steps"] for r in g.runs]
        parts.append(_html_table(f"seeds-{k}", seed_cols, seed_rows))
        md += [f"## {g.name}", "", "```", format_group(g), "```", "",
               "| " + " | ".join(seed_cols) + " |", "|" + "---|" * len(seed_cols)]
        md += ["| " + " | ".join(r) + " |" for r in seed_rows] + [""]
    if band is not None:
        parts.append(f'<h2>Learning curves</h2><figure id="plot-seeds"><img alt="learning curves over seeds" '
                     f'src="{_data_uri(band, "image/png")}"><figcaption>line: mean over seeds; band: +-1 standard '
                     "deviation across seeds; thin lines: each seed</figcaption></figure>")
        md += ["## Learning curves", "", f"![seeds]({band.relative_to(out)})", ""]
    parts.append(f"<script>{_JS}</script></body></html>")
    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    (out / "SUMMARY.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return page


def build_report(specs: list[str], out: Path, eval_episodes: int = 5, video: VideoSpec | None = VideoSpec(
        seconds=8.0, width=640, height=360), log: Callable[[str], None] = print) -> Path:
    """Write report.html, SUMMARY.md, plots/, videos/ and evaluations.json into `out`; returns report.html.
    Seed groups (the parent folders of `legkit train --seeds`) get the aggregated report of build_seed_report."""
    from legkit.evaluate.aggregate import is_seed_group

    if not specs:
        raise LegkitError("name at least one run folder (or pretrained:NAME) to report on")
    grouped = [is_seed_group(Path(s)) for s in specs]
    if any(grouped):
        if not all(grouped):
            plain = [s for s, g in zip(specs, grouped) if not g]
            raise LegkitError(f"give seed groups (parents made by legkit train --seeds) or runs, not both: "
                              f"{', '.join(plain)} {'is a run' if len(plain) == 1 else 'are runs'}")
        return build_seed_report(specs, out)
    if eval_episodes < 0:
        raise LegkitError(f"--eval-episodes must be 0 (no checkpoint evaluations) or more, got {eval_episodes}")
    runs = [load_run(s) for s in specs]
    seen: dict[str, int] = {}
    for run in runs:  # two runs with the same folder name: label them by path
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1:
            run.name = str(run.folder)
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    if eval_episodes:
        for run in runs:
            if checkpoints(run.folder):
                evaluate_checkpoints(run, eval_episodes, progress=log)
        if any(r.checkpoint_evals for r in runs):
            notes.append(f"Evaluation over training: {eval_episodes} deterministic episodes per checkpoint.")
    (out / "evaluations.json").write_text(json.dumps({r.name: r.checkpoint_evals for r in runs}, indent=2) + "\n")
    log("plotting")
    plots = plot_runs(runs, out / "plots")
    videos: dict[str, Path] = {}
    if video is not None:
        for i, run in enumerate(runs):
            policy = find_policy(run.folder, None)
            path = out / "videos" / f"{i:02d}-{run.folder.name}.mp4"
            log(f"rendering {video.seconds:g} s of {run.name} ({video.width}x{video.height})")
            video_of_policy(policy, video, path)
            videos[run.name] = path
    for run in runs:
        if run.episodes is None and not run.scalars:
            notes.append(f"{run.name} has no episodes.csv or TensorBoard logs (a packaged policy keeps only the "
                         "model and its evaluation), so it has no training curves.")
    page = out / "report.html"
    page.write_text(render_html(runs, plots, videos, notes), encoding="utf-8")
    (out / "SUMMARY.md").write_text(render_markdown(runs, plots, videos, out, notes), encoding="utf-8")
    return page
