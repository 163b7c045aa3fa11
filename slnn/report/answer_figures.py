"""The answer's figures: each rule's best-cell test error against the reference levels, and how
fast each best cell reaches the target (Kaplan-Meier). Drawn at 10 inches, 100 dpi (1000 px), with
tick labels of at least 10 pt, one panel per data set."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from slnn.report.figbase import BAND, LABELS, Fig, _save, _slug  # noqa: E402

FONT = 10
WIDTH = 10.0  # inches: 1000 px at DPI


def panels(n: int, row_height: float, **kw):
    """A figure ``WIDTH`` wide of ``n`` panels, at most 3 a row, each row ``row_height`` (plus
    ``extra`` inches) tall; the grid's unused panels are hidden. Returns (fig, axes)."""
    extra = kw.pop("extra", 0.0)
    ncol = min(3, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, squeeze=False,
                             figsize=(WIDTH, row_height * nrow + extra),
                             **kw)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    """A panel's title (top left), axis labels and ticks at the figures' size, a light grid."""
    ax.set_title(title, fontsize=FONT + 1, loc="left")
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)


def reference_levels(runs: pd.DataFrame) -> pd.DataFrame:
    """Per data set: ``chance`` (the test error of answering the training split's majority
    class, mean over seeds; each seed's runs share one split) and ``uniform`` (1 - 1/k)."""
    r = runs[np.isfinite(pd.to_numeric(runs.get("chance_error"), errors="coerce"))] \
        if "chance_error" in runs else runs.iloc[:0]
    chance = r.groupby(["data", "seed"])["chance_error"].mean().groupby(level="data").mean()
    k = runs.groupby("data")["n_classes"].max() if "n_classes" in runs else pd.Series(dtype=float)
    out = pd.DataFrame({"chance": chance, "uniform": 1.0 - 1.0 / k.astype(float)})
    return out


def answer_figure(answer, runs: pd.DataFrame, pal: dict, out: Path) -> list[Fig]:
    key = "answer"
    title = "each rule's best cell: test error"
    cap = ("Per data set, each rule at its best cell (cross-fitted: each seed is reported at a "
           "cell chosen by the other half of the seeds): mean test error with its 95% interval, "
           "a diverged run counted as an error of 1. Dashed: the test error of always answering "
           "the training split's majority class; dotted: uniform guessing. Under a rule's name: "
           "the share of its runs that diverged, if any.")
    t = answer.table
    if t.empty or not np.isfinite(t["test_error"].astype(float)).any():
        return [Fig(key, title, cap, note="no rule has a best cell with a test error (see the "
                    "table and the outcomes figure for what happened instead).")]
    levels = reference_levels(runs)
    datas = sorted(t["data"].unique())
    rules = sorted(t["update"].unique())
    fig, axes = panels(len(datas), max(2.3, 0.34 * len(rules) + 1.3))
    for ax, data in zip(axes.flat, datas):
        d = t[t["data"] == data].set_index("update")
        labels = []
        for i, rule in enumerate(rules):
            y = len(rules) - 1 - i
            c = pal.get(rule, "0.3")
            if rule not in d.index:
                labels.append(rule)
                continue
            r = d.loc[rule]
            labels.append(f"{rule}\n{r['div_rate']:.0%} diverged" if r["n_ran"] and r["n_diverged"]
                          else rule)
            if np.isfinite(r["test_error"]):
                lo, hi = r["test_lo"], r["test_hi"]
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.plot([lo, hi], [y, y], color=c, lw=4, alpha=0.55, solid_capstyle="butt")
                ax.plot([r["test_error"]], [y], "o", color=c, ms=8, mec="0.2")
                ax.annotate(f"{r['test_error']:.3f}", (r["test_error"], y), xytext=(0, 7),
                            textcoords="offset points", ha="center", fontsize=FONT - 1)
            else:
                why = "cannot run" if r["n_ran"] == 0 else "no cell trained"
                ax.text(0.03, y, why, va="center", fontsize=FONT, color="0.35")
        if data in levels.index:
            ch, un = levels.loc[data, "chance"], levels.loc[data, "uniform"]
            if np.isfinite(ch):
                ax.axvline(ch, color="0.3", ls="--", lw=1.2)
                ax.annotate(f"majority\n{ch:.3f}", (ch, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(-3, -3), textcoords="offset points", ha="right", va="top",
                            fontsize=FONT - 2, color="0.3")
            if np.isfinite(un):
                ax.axvline(un, color="0.3", ls=":", lw=1.2)
                ax.annotate(f"uniform\n{un:.3f}", (un, 0.0), xycoords=("data", "axes fraction"),
                            xytext=(3, 3), textcoords="offset points", ha="left", va="bottom",
                            fontsize=FONT - 2, color="0.3")
        ax.set_yticks(range(len(rules)))
        ax.set_yticklabels(labels[::-1], fontsize=FONT)
        ax.set_ylim(-0.6, len(rules) - 0.3)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.tick_params(axis="x", labelsize=FONT)
        ax.set_xlabel("test error at the best cell", fontsize=FONT)
        ax.set_title(data, fontsize=FONT + 1, loc="left")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return [Fig(key, title, cap, _save(fig, out / f"{key}.png"))]


def km_figure(answer, pal: dict, out: Path) -> list[Fig]:
    key = "time_to_target"
    title = (f"share of runs not yet at validation error <= {answer.target:g}, per epoch "
             "(Kaplan-Meier)")
    cap = ("Each rule at its best cell (cross-fitted): the share of runs whose validation error has "
           f"not yet reached {answer.target:g}, by epoch, with its 95% band; a run that never "
           "reaches it (diverged or stopped runs included) is censored at the epoch budget (a tick). "
           "A curve that stays above 0.5 has no median.")
    km = answer.km
    if km is None or km.empty:
        return [Fig(key, title, cap, note="no run has a history of its validation error.")]
    datas = sorted(km["data"].unique())
    fig, axes = panels(len(datas), 3.4)
    styles = ["-", "--", "-.", ":"]
    for ax, data in zip(axes.flat, datas):
        d = km[km["data"] == data]
        for i, (rule, g) in enumerate(d.groupby("update", sort=True)):
            g = g.sort_values("epoch")
            c = pal.get(rule, "0.3")
            never = bool((g["surv"] >= 1).all())  # flat at 1: overplotted, so the label says it
            ax.step(g["epoch"], g["surv"], where="post", color=c, lw=1.8,
                    ls=styles[i % len(styles)], label=f"{rule} (none reached it)" if never
                    else rule)
            if "lo" in g and "hi" in g:
                ax.fill_between(g["epoch"], g["lo"], g["hi"], step="post", color=c, alpha=0.15)
        ev = answer.events
        if ev is not None and len(ev):
            cens = ev[(ev["data"] == data) & ~ev["reached"].astype(bool)]
            for rule, g in cens.groupby("update"):
                ax.plot(g["time"], np.full(len(g), 1.02), "|", color=pal.get(rule, "0.3"),
                        ms=6, clip_on=False)
        ax.set_ylim(0, 1.05)
        _label(ax, data, "epoch", "share not yet at target")
        ax.legend(fontsize=FONT - 1)
    fig.tight_layout()
    return [Fig(key, title, cap, _save(fig, out / f"{key}.png"))]


def best_lr_curves(sweep, pal: dict, out: Path) -> list[Fig]:
    """Per data set and metric (validation loss, validation error): one panel per activation
    (at most 6), each rule at its own best learning rate for that activation (chosen on the
    choosing seeds, ``selection.choose_best``), mean and 95% band over the seeds that did not
    diverge. The full (activation x lr) grid stays in the summary tables."""
    from slnn.report.selection import choose_best
    from slnn.report.stats import bands


    runs = sweep.done
    if runs.empty or sweep.history.empty:
        return [Fig("curves", "learning curves", "", note="no run has a history: no curves.")]
    best = choose_best(runs, by=("data", "update", "activation"))
    if best.empty:
        return [Fig("curves", "learning curves", "", note="no cell trained: no curves.")]
    metrics = ["val_loss", "val_error"]
    b = bands(sweep, metrics, hold_last=True)
    keep = best[["data", "update", "activation", "lr"]]
    b = b.merge(keep, on=list(keep.columns))
    figs = []
    for data in sorted(runs["data"].unique()):
        acts = sorted(runs.loc[runs["data"] == data, "activation"].unique())
        for metric in metrics:
            key = f"curves_{metric}_{_slug(data)}"
            title = f"{data}: {LABELS[metric]} vs epoch, each rule at its best lr per activation"
            sub = b[(b["data"] == data) & (b["metric"] == metric)].dropna(subset=["mean"])
            many = sub["update"].nunique() > 4  # too many for a legend inside each panel
            cap = (f"{LABELS[metric]} on {data}; one panel per activation, each rule at the "
                   "learning rate with its lowest mean validation error for that activation (a "
                   "diverged run scoring 1; "
                   + ("the panels share one legend of the rules" if many else "legend: the lr")
                   + f"); {BAND} over the seeds that did not diverge. A run that stopped early "
                   "keeps its last value.")
            if sub.empty:
                figs.append(Fig(key, title, cap, note=f"no {metric} curve on {data}."))
                continue
            for chunk in range(0, len(acts), 6):
                part = acts[chunk:chunk + 6]
                fig, axes = panels(len(part), 2.9, extra=0.5, sharex=True)
                styles = ["-", "--", "-.", ":"]
                order = sorted(sub["update"].unique())  # a rule's style is the same everywhere
                for ax, act in zip(axes.flat, part):
                    d = sub[sub["activation"] == act]
                    for rule, g in d.groupby("update", sort=True):
                        g = g.sort_values("epoch")
                        c = pal.get(rule, "0.3")
                        ax.plot(g["epoch"], g["mean"], color=c, lw=1.7,
                                ls=styles[order.index(rule) % len(styles)],
                                label=f"{rule} (lr {g['lr'].iloc[0]:g})")
                        ax.fill_between(g["epoch"], g["lo"], g["hi"], color=c, alpha=0.15, lw=0)
                    if d.empty:
                        ax.text(0.5, 0.5, "no rule trained", ha="center",
                                transform=ax.transAxes, fontsize=FONT)
                    if metric.endswith("error"):
                        ax.set_ylim(-0.02, 1.02)
                    elif len(d):
                        lo, hi = np.nanmin(d["mean"]), np.nanmax(d["mean"])
                        if lo > 0 and hi / lo > 100:
                            ax.set_yscale("log")
                    ax.set_title(act, fontsize=FONT + 1, loc="left")
                    ax.tick_params(labelsize=FONT)
                    ax.grid(alpha=0.3)
                    if len(d) and not many:
                        ax.legend(fontsize=FONT - 1, loc="best")
                for ax in axes[-1, :]:
                    ax.set_xlabel("epoch", fontsize=FONT)
                for ax in axes[:, 0]:
                    ax.set_ylabel(LABELS[metric].split(" (")[0], fontsize=FONT)
                if many:  # one legend of the rules, in the grid's spare panel or below it
                    _shared_legend(fig, axes, len(part), sub, pal, styles)
                fig.tight_layout()
                k = key if chunk == 0 else f"{key}_{chunk // 6 + 1}"
                figs.append(Fig(k, title, cap, _save(fig, out / f"{k}.png")))
    return figs


def _shared_legend(fig, axes, used: int, sub: pd.DataFrame, pal: dict, styles: list) -> None:
    """A legend of every rule of ``sub`` (colour and line style as drawn), in the first unused
    panel of ``axes`` if there is one, else below the figure."""
    rules = sorted(sub["update"].unique())
    handles = [plt.Line2D([], [], color=pal.get(r, "0.3"), lw=1.8, ls=styles[i % len(styles)])
               for i, r in enumerate(rules)]
    spare = list(axes.flat[used:])
    if spare:
        spare[0].set_visible(True)
        spare[0].axis("off")
        spare[0].legend(handles, rules, loc="center", fontsize=FONT, title="update rule",
                        title_fontsize=FONT, frameon=False)
    else:
        fig.legend(handles, rules, loc="lower center", ncol=min(4, len(rules)), fontsize=FONT,
                   bbox_to_anchor=(0.5, -0.02), frameon=False)


def best_lr_cosines(sweep, out: Path) -> list[Fig]:
    """Per data set: one panel per rule (at most 6 a figure), one line per activation at the
    rule's best learning rate for it: the mean cosine between the applied step and the descent
    direction, per epoch."""
    import seaborn as sns

    from slnn.report.selection import choose_best
    from slnn.report.stats import bands

    runs = sweep.done
    key0 = "grad_cosine"
    if runs.empty or sweep.history.empty or "grad_cosine" not in sweep.history:
        return [Fig(key0, "how far each rule's step is from the descent direction", "",
                    note="no run has a history of the cosine.")]
    best = choose_best(runs, by=("data", "update", "activation"))
    b = bands(sweep, ["grad_cosine"], hold_last=False, drop=())
    keep = best[["data", "update", "activation", "lr"]]
    b = b.merge(keep, on=list(keep.columns)).dropna(subset=["mean"])
    figs = []
    acts = sorted(runs["activation"].unique())
    act_pal = dict(zip(acts, sns.color_palette("colorblind", len(acts))))
    for data in sorted(runs["data"].unique()):
        key = f"grad_cosine_{_slug(data)}"
        title = f"{data}: how far each rule's step is from the descent direction"
        cap = (f"cosine between each update and the true negative gradient on {data}, averaged "
               "over the updates of an epoch (1: the descent direction; 0: orthogonal; below 0: "
               "uphill); one panel per rule, one line per activation at the rule's best "
               f"learning rate for it; {BAND} over the runs still training at that epoch.")
        sub = b[b["data"] == data]
        rules = sorted(sub["update"].unique())
        if not rules:
            figs.append(Fig(key, title, cap, note=f"no cosine curve on {data}: no rule trained."))
            continue
        for chunk in range(0, len(rules), 6):
            part = rules[chunk:chunk + 6]
            fig, axes = panels(len(part), 2.8, extra=0.4, sharey=True)
            for ax, rule in zip(axes.flat, part):
                d = sub[sub["update"] == rule]
                for act, g in d.groupby("activation", sort=True):
                    g = g.sort_values("epoch")
                    ax.plot(g["epoch"], g["mean"], color=act_pal[act], lw=1.6,
                            label=f"{act} (lr {g['lr'].iloc[0]:g})")
                    ax.fill_between(g["epoch"], g["lo"], g["hi"], color=act_pal[act],
                                    alpha=0.15, lw=0)
                ax.axhline(0, color="0.5", lw=0.8, ls=":")
                ax.set_ylim(-1.05, 1.05)
                ax.set_title(rule, fontsize=FONT + 1, loc="left")
                ax.tick_params(labelsize=FONT)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=FONT - 2, loc="lower right")
            for ax in axes[-1, :]:
                ax.set_xlabel("epoch", fontsize=FONT)
            for ax in axes[:, 0]:
                ax.set_ylabel(LABELS["grad_cosine"], fontsize=FONT)
            fig.tight_layout()
            k = key if chunk == 0 else f"{key}_{chunk // 6 + 1}"
            figs.append(Fig(k, title, cap, _save(fig, out / f"{k}.png")))
    return figs


def profile_figure(runs: pd.DataFrame, pal: dict, out: Path) -> list[Fig]:
    """Per data set: the share of each rule's runs (every cell) whose final test error is at most
    tau, as tau goes from 0 to 1; a diverged run never counts as reaching it."""
    from slnn.report.aggregate import performance_profile

    key = "performance_profile"
    title = "performance profile: share of runs with test error <= tau"
    cap = ("Per data set, every run of each rule over every (activation, lr) cell: the share "
           "whose final test error is at most tau, with pointwise Clopper-Pearson 95% bands. A "
           "diverged run never reaches any tau, so a rule that often diverges ends below 1 on the "
           "right. Higher and further left is better.")
    datas = sorted(runs["data"].unique())
    taus = np.linspace(0, 1, 101)
    profiles = {d: performance_profile(runs[runs["data"] == d], taus) for d in datas}
    datas = [d for d in datas if len(profiles[d])]
    if not datas:
        return [Fig(key, title, cap, note="no run ran, so there is no profile.")]
    fig, axes = panels(len(datas), 3.3)
    styles = ["-", "--", "-.", ":"]
    for ax, data in zip(axes.flat, datas):
        for i, (rule, g) in enumerate(profiles[data].groupby("update", sort=True)):
            c = pal.get(rule, "0.3")
            ax.step(g["tau"], g["share"], where="post", color=c, lw=1.7,
                    ls=styles[i % len(styles)], label=rule)
            ax.fill_between(g["tau"], g["lo"], g["hi"], step="post", color=c, alpha=0.12)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        _label(ax, data, "tau (test error)", "share of runs <= tau")
        ax.legend(fontsize=FONT - 2, loc="lower right")
    fig.tight_layout()
    return [Fig(key, title, cap, _save(fig, out / f"{key}.png"))]
