"""retention.csv and its figures: the rare signal around every burst (rare_tasks.analysis.retention)
of a bursts run traced after every step (injection.schedule = "bursts", measure.trace_rare)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rare_tasks import injection
from rare_tasks.analysis import retention
from rare_tasks.core import tables, traces, workdir
from rare_tasks.core.plots import plt, save
from rare_tasks.core.report import Section, fmt
from rare_tasks.synthetic.grid import Group
from rare_tasks.synthetic.report.results_view import GridResults, averaged_over, cell_key

RETENTION_FILE = "retention.csv"
FIGURES = ("figures/retention_traces.png", "figures/retained_fraction.png")
FILES = (RETENTION_FILE,) + FIGURES
COLUMNS = ("width", "gap", "rare_frequency", "seed", "burst", "gain", "retained_fraction",
           "half_life", "baseline_gain", "signal", "update", "before", "peak", "cell")
# Retention signals: name in retention.csv -> (trace array, transform to "higher is better").
SIGNALS = {"feature_capture": ("rare_capture", lambda a: a),
           "explained_variance": ("rare_fvu", lambda a: 1.0 - a)}
_BURST_COLUMNS = ("burst", "gain", "retained_fraction", "half_life", "update", "before", "peak")


def applies(run: GridResults) -> bool:
  return run.config.injection.schedule == "bursts" and run.config.measure.trace_rare


def _signal_rows(run: GridResults, group: Group, trace: dict[str, np.ndarray]):
  """Per burst rows and per cell summaries of both signals of one group's cells."""
  steps, withhold = run.config.train.steps, run.config.injection.withhold_steps
  rows, summaries = [], []
  for si, row in enumerate(group.cells):
    for pi, c in enumerate(row):
      bursts = injection.burst_updates(steps, withhold, c.values["gap"])
      for name, (array, transform) in SIGNALS.items():
        # Mean over the rare tasks; trace step t is the value after t updates.
        signal = transform(trace[array][:, si, pi].mean(-1))
        metrics = retention.burst_metrics(signal, bursts)
        # The same rise over burst-free windows of the withholding phase: training noise.
        baseline = retention.baseline_gain(signal, withhold, c.values["gap"])
        rows += [{**cell_key(c), "signal": name, "baseline_gain": baseline,
                  **{k: m[k] for k in _BURST_COLUMNS}} for m in metrics]
        summaries.append({**cell_key(c), "signal": name, **retention.cell_summary(metrics),
                          "baseline_gain": baseline, "final": float(signal[-1]),
                          "burst_size": c.burst_size})
  return rows, summaries


def _read_traces(run: GridResults) -> dict[str, dict[str, np.ndarray]]:
  out = {}
  for g in run.groups:
    trace = traces.read_group(run.wd, g.name)
    if trace is None or len(trace["steps"]) != run.config.train.steps + 1:
      raise workdir.WorkdirError(f"{g.name}: its per-step trace is missing or incomplete; run "
                                 "the study again to finish it")
    out[g.name] = trace
  return out


def section(run: GridResults) -> Section:
  group_traces = _read_traces(run)
  rows, summaries, shown = [], [], {}
  for g in run.groups:
    r, s = _signal_rows(run, g, group_traces[g.name])
    rows += r
    summaries += s
    shown.setdefault(g.static["width"], g)  # the first group of each width is drawn
  tables.write_csv(run.wd / RETENTION_FILE, COLUMNS, rows)
  widths = sorted(shown)
  gaps = sorted({s["gap"] for s in summaries})
  freq = sorted({s["rare_frequency"] for s in summaries})[0]
  sel = {name: [s for s in summaries if s["signal"] == name and s["rare_frequency"] == freq]
         for name in SIGNALS}
  lines = ["## Injection and retention", "",
           f"Rare task withheld for {run.config.injection.withhold_steps} updates, then injected "
           f"in bursts every gap updates at long-run frequency {freq:g}. Median over bursts, "
           f"then {averaged_over(run.cells, ('width', 'gap', 'rare_frequency'))}; a cell "
           "accumulates when the level it keeps over the run exceeds one burst's gain.", ""]
  for name in SIGNALS:
    lines += _signal_table(name, sel[name], widths, gaps)
  retained = tables.mean_by(sel["feature_capture"], ("width", "gap"), "median_retained_fraction")
  grid = np.array([[retained[(w, gp)] for gp in gaps] for w in widths])
  lines += _capture_lines(sel["feature_capture"], widths, gaps, grid)
  bursts = injection.burst_updates(run.config.train.steps, run.config.injection.withhold_steps,
                                   gaps[-1])
  curves = {}
  for w in widths:
    si, pi = _find(shown[w], gaps[-1], freq)
    signal = group_traces[shown[w].name]["rare_capture"][:, si, pi].mean(-1)
    curves[w] = {"signal": signal, "bursts": bursts}
  traces_figure(run.figure("retention_traces.png"), curves,
                f"long-run rare frequency {freq:g}, seed of the first stream")
  retained_figure(run.figure("retained_fraction.png"), np.array(widths), np.array(gaps), grid)
  lines += ["![retention traces](figures/retention_traces.png)", "",
            "![retained fraction](figures/retained_fraction.png)", ""]
  return Section(lines, {}, FILES)


def _signal_table(name: str, sel: list[dict], widths: list[int], gaps: list[int]) -> list[str]:
  ret = tables.mean_by(sel, ("width", "gap"), "median_retained_fraction")
  gain = tables.mean_by(sel, ("width", "gap"), "median_gain")
  base = tables.mean_by(sel, ("width", "gap"), "baseline_gain")
  acc = tables.mean_by([{**s, "acc": float(s["accumulates"])} for s in sel], ("width", "gap"),
                       "acc")
  lines = [f"Signal `{name}`: retained fraction (median gain, baseline_gain; fraction of cells "
           "that accumulate)", "", "| width | " + " | ".join(f"gap {gp}" for gp in gaps) + " |",
           "|---|" + "---|" * len(gaps)]
  for w in widths:
    lines.append(f"| {w} | " + " | ".join(
        f"{fmt(ret[(w, gp)])} ({fmt(gain[(w, gp)])}, {fmt(base[(w, gp)])}; "
        f"{fmt(acc[(w, gp)])})" for gp in gaps) + " |")
  return lines + [""]


def _capture_lines(sel: list[dict], widths: list[int], gaps: list[int],
                   retained: np.ndarray) -> list[str]:
  gain = tables.mean_by(sel, ("width", "gap"), "median_gain")
  base = tables.mean_by(sel, ("width", "gap"), "baseline_gain")
  final = tables.mean_by(sel, ("width", "gap"), "final")
  lines = []
  for j, gp in enumerate(gaps):
    if gp == 1:  # steady exposure: nothing decays between bursts
      continue
    ends = []
    for i, w in ((0, widths[0]), (-1, widths[-1])):
      g, b = gain[(w, gp)], base[(w, gp)]
      if np.isfinite(b) and b > 0:
        against = f"{fmt(g / b)} times the rise without a burst, baseline_gain {fmt(b)}"
      else:
        against = f"the rise without a burst, baseline_gain {fmt(b)}, is not positive"
      ends.append(f"width {w} jumps by a median {fmt(g)} per burst ({against}) and retains "
                  f"{fmt(retained[i, j])} of it at the next burst")
    lines.append(f"- Gap {gp}, feature capture: the narrowest " + ends[0] + "; the widest " +
                 ends[1] + ".")
  lines += ["", "baseline_gain is the same rise (peak minus start of a window of gap updates) "
            "over burst-free windows in the second half of the withholding phase: a gain not "
            "well above it is training noise, not a spike.", "",
            "Feature capture at the end of the run (same mean), by gap " +
            ", ".join(str(gp) for gp in gaps) + ":", ""]
  for w in widths:
    lines.append(f"- width {w}: " + ", ".join(fmt(final[(w, gp)]) for gp in gaps))
  return lines + [""]


def _find(group: Group, gap: int, freq: float) -> tuple[int, int]:
  for si, row in enumerate(group.cells):
    for pi, c in enumerate(row):
      if c.values["gap"] == gap and c.values["rare_frequency"] == freq:
        return si, pi
  raise KeyError((gap, freq))


ZOOM_BURSTS = 3  # the right-hand panels show the last few bursts


def traces_figure(path: Path, curves: dict[int, dict[str, np.ndarray]], subtitle: str) -> None:
  """The rare signal against update, a row per width: the whole run on the left (from halfway
  through the withholding phase), the last bursts on the right; each panel scaled to its own
  range, so that a narrow model's small spikes show. Bursts are gray lines."""
  fig, axes = plt.subplots(len(curves), 2, figsize=(11, 1.9 * len(curves)),
                           constrained_layout=True, squeeze=False,
                           gridspec_kw={"width_ratios": (3, 1)})
  for (left, right), w in zip(axes, sorted(curves)):
    signal, bursts = curves[w]["signal"], curves[w]["bursts"]
    end = len(signal) - 1
    first = int(bursts[0]) if len(bursts) else end
    zoom = int(bursts[-ZOOM_BURSTS]) if len(bursts) >= ZOOM_BURSTS else first
    for ax, lo in ((left, first // 2), (right, max(0, zoom - 2))):
      t = np.arange(lo, end + 1)
      ax.plot(t, signal[lo:], color="C3", lw=1)
      for b in bursts[bursts >= lo]:
        ax.axvline(b, color="gray", lw=0.4, alpha=0.6)
      ax.set_xlim(lo, end)
      shown = signal[lo:][np.isfinite(signal[lo:])]
      if len(shown):
        pad = 0.08 * max(float(shown.max() - shown.min()), 1e-6)
        ax.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)
      ax.tick_params(labelsize=7)
    left.set_ylabel(f"width {w}\ncapture", fontsize=8)
  axes[-1, 0].set_xlabel("update (gray: bursts; the withholding phase's second half first)")
  axes[-1, 1].set_xlabel(f"the last {ZOOM_BURSTS} bursts")
  fig.suptitle(f"rare-task feature capture around bursts, {subtitle}", fontsize=10)
  save(fig, path)


def retained_figure(path: Path, widths: np.ndarray, gaps: np.ndarray,
                    retained: np.ndarray) -> None:
  """The retained fraction over width x gap (retained: (W, G))."""
  fig, ax = plt.subplots(figsize=(1.4 * len(gaps) + 3, 0.6 * len(widths) + 2.5),
                         constrained_layout=True)
  im = ax.imshow(retained, cmap="viridis", vmin=0, vmax=1, origin="lower", aspect="auto")
  for i in range(len(widths)):
    for j in range(len(gaps)):
      v = retained[i, j]
      ax.text(j, i, "nan" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
              color="white" if np.isfinite(v) and v < 0.5 else "black", fontsize=8)
  ax.set_xticks(range(len(gaps)), [str(g) for g in gaps])
  ax.set_yticks(range(len(widths)), [str(w) for w in widths])
  ax.set_xlabel("gap between bursts (updates)")
  ax.set_ylabel("encoder width N")
  fig.colorbar(im, ax=ax, label="retained fraction of a burst's gain")
  ax.set_title("feature capture retained until the next burst", fontsize=9)
  save(fig, path)
