"""The report's figures (PNG, matplotlib Agg): per table ours vs published, and accuracy vs MFLOPs.

Proxy results are always drawn on their own axes, titled as proxy, so no figure puts a synthetic-
data number beside a paper number on one scale.
"""

from __future__ import annotations

import json
from pathlib import Path

from repro.report import verdicts as V

VERDICT_COLORS = {V.REPRODUCED: "tab:green", V.NOT_REPRODUCED: "tab:red"}
PUBLISHED_COLOR = "black"
PROXY_COLOR = "tab:orange"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _built_cells(t: dict) -> list[dict]:
    return [c for c in t["cells"] if c["model"] is not None and not c["skip"]]


def table_plot(t: dict, path: Path) -> Path | None:
    """Left: published (black bar, grey band = ±tolerance) and ours from the paper preset (dot, ±std).
    Right, only when proxy runs exist: ours on the proxy preset(s), on their own axis."""
    cells = _built_cells(t)
    if not cells:
        return None
    plt = _pyplot()
    proxies = [p for p, info in t["presets"].items() if info["proxy"]]
    panels = 2 if proxies else 1
    height = max(3.0, 1.8 + 0.3 * len(cells))
    fig, axes = plt.subplots(1, panels, figsize=(6.0 * panels, height), sharey=True, squeeze=False)
    labels = [f"{c['row']} / {c['column']}" if len({x["column"] for x in cells}) > 1 else c["row"] for c in cells]
    ys = list(range(len(cells)))[::-1]  # first cell at the top, as in the table
    unit = f"{t['metric']} ({t['unit']})"

    ax = axes[0][0]
    any_point = uncompared = False
    for y, c in zip(ys, cells):
        if c["published"] is not None:
            ax.barh(y, 2 * t["tolerance"], left=c["published"] - t["tolerance"], height=0.6, color="0.85", zorder=1)
            ax.plot([c["published"]], [y], marker="|", markersize=14, mew=2.5, color=PUBLISHED_COLOR, zorder=3, ls="none")
            any_point = True
        run = c["runs"].get(t["paper_preset"])
        if run and run["n"]:
            color = VERDICT_COLORS.get(run["verdict"], "tab:blue")  # blue: nothing published to compare with
            uncompared |= run["verdict"] not in VERDICT_COLORS
            ax.errorbar([run["mean"]], [y], xerr=[run["std"]], fmt="o", color=color, capsize=3, zorder=4)
            any_point = True
    if not any_point:
        ax.text(0.5, 0.5, "published values not transcribed\nand no paper-preset runs yet", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
        ax.set_xticks([])
    ax.set_title(f"ours (paper preset '{t['paper_preset']}') vs published", fontsize=10)
    ax.set_xlabel(unit)
    ax.set_ylim(-0.6, len(cells) - 0.4)  # keep the first and last label off the frame
    ax.set_yticks(ys, labels, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    handles = [
        plt.Line2D([], [], marker="|", mew=2.5, markersize=12, ls="none", color=PUBLISHED_COLOR, label="published"),
        plt.Rectangle((0, 0), 1, 1, color="0.85", label=f"±{t['tolerance']:g} tolerance"),
        plt.Line2D([], [], marker="o", ls="none", color=VERDICT_COLORS[V.REPRODUCED], label="ours: reproduced"),
        plt.Line2D([], [], marker="o", ls="none", color=VERDICT_COLORS[V.NOT_REPRODUCED], label="ours: not reproduced"),
    ]
    if uncompared:
        handles.append(plt.Line2D([], [], marker="o", ls="none", color="tab:blue", label="ours: no published value"))
    if proxies:
        ax = axes[0][1]
        markers = "sD^v"
        for i, preset in enumerate(proxies):
            xs, yy, err = [], [], []
            for y, c in zip(ys, cells):
                run = c["runs"].get(preset)
                if run and run["n"]:
                    xs.append(run["mean"]), yy.append(y + 0.15 * i), err.append(run["std"])
            ax.errorbar(xs, yy, xerr=err, fmt=markers[i % len(markers)], color=PROXY_COLOR, alpha=1 - 0.3 * i,
                        capsize=3, label=f"ours, proxy preset '{preset}'")
        ax.set_title("PROXY (synthetic data): not comparable with the paper", fontsize=10, color="tab:brown")
        ax.set_xlabel(unit + ", proxy")
        ax.grid(axis="x", alpha=0.3)
        handles += ax.get_legend_handles_labels()[0]
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"{t['id']}: {t['title']}", fontsize=11)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _accuracy(t: dict, value: float | None) -> float | None:
    """Top-1 accuracy in %, from a top-1 accuracy or error; None for other metrics."""
    if value is None:
        return None
    if t["metric"] == "top1_acc":
        return value
    if t["metric"] == "top1_err":
        return 100.0 - value
    return None


def accuracy_vs_flops_plot(report: dict, path: Path) -> Path | None:
    """One panel per dataset of the paper presets (published hollow, ours filled, a thin line from
    the paper's point to ours), plus a proxy panel with ours only."""
    published, ours, proxy = {}, {}, {}
    for t in report["tables"]:
        if t["metric"] not in ("top1_acc", "top1_err"):
            continue
        dataset = t["presets"][t["paper_preset"]]["data"]
        for c in _built_cells(t):
            cx = c["complexity"]
            if cx is None:
                continue
            key = (t["paper"], c["model"], json.dumps(c["args"], sort_keys=True, default=str))
            flops = cx["flops"]
            pub_x = flops["published"] * (1000.0 if flops["unit"] != "MFLOPs" else 1.0) if flops and flops["published"] else None
            pub_y = _accuracy(t, c["published"])
            if pub_x is not None and pub_y is not None:
                published.setdefault(dataset, {})[key] = (pub_x, pub_y, t["paper"])
            for preset, run in c["runs"].items():
                if not run["n"]:
                    continue
                point = (cx["mflops"], _accuracy(t, run["mean"]), t["paper"], pub_x, pub_y)
                if t["presets"][preset]["proxy"]:
                    proxy.setdefault(preset, {})[key] = point
                else:
                    ours.setdefault(dataset, {})[key] = point
    datasets = sorted(set(published) | set(ours))
    panels = [("paper", d) for d in datasets] + [("proxy", p) for p in sorted(proxy)]
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    papers = sorted({p[2] for group in (*published.values(), *ours.values(), *proxy.values()) for p in group.values()})
    colors = {p: plt.get_cmap("tab10")(i) for i, p in enumerate(papers)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    for ax, (kind, name) in zip(axes[0], panels):
        if kind == "paper":
            for x, y, paper in published.get(name, {}).values():
                ax.scatter(x, y, facecolors="none", edgecolors=[colors[paper]], s=40, linewidths=1.3)
            for x, y, paper, px, py in ours.get(name, {}).values():
                if px is not None and py is not None:
                    ax.plot([px, x], [py, y], color=colors[paper], lw=0.7, alpha=0.6)
                ax.scatter(x, y, color=colors[paper], s=30)
            ax.set_title(f"{name}: published (hollow) and ours (filled)", fontsize=10)
            ax.set_ylabel("top-1 accuracy (%)")
        else:
            for x, y, paper, _, _ in proxy[name].values():
                ax.scatter(x, y, color=colors[paper], marker="s", s=30)
            ax.set_title(f"PROXY preset '{name}' (synthetic data): ours only", fontsize=10, color="tab:brown")
            ax.set_ylabel("top-1 accuracy on synthetic data (%)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 100, not 10^2
        lo, hi = ax.get_xlim()
        # Label 2x and 5x minor ticks only on a narrow axis; on a wide one they collide.
        narrow = hi / lo < 30
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if narrow and f"{v:g}"[0] in "25" else ""))
        ax.set_xlabel("MFLOPs (multiply-adds, paper's input size)")
        ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], marker="o", ls="none", color=colors[p], label=p) for p in papers]
    handles += [plt.Line2D([], [], marker="o", ls="none", mfc="none", color="0.3", label="published"),
                plt.Line2D([], [], marker="o", ls="none", color="0.3", label="ours")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
