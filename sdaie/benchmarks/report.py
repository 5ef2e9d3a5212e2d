"""A benchmark result as Markdown tables, one per section that ran."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (right-aligned numbers), readable in a terminal and pasteable."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|",
                      *(line(r) for r in body)])


def _model_table(result: dict[str, Any], model_rows: list[dict]) -> str:
    ratios = result.get("extractor", {}).get("ratios", [])
    ratio = {(r["mode"], r["threads"], r["omp_wait"]): r for r in ratios}
    table = []
    for r in model_rows:
        x = (ratio.get((r["mode"], r["threads"], r["omp_wait"]))
             if r["implementation"] == "fast" else None)
        table.append([r["backbone"], r["implementation"], r["mode"], r["threads"],
                      r["omp_wait"], r["patches_per_s"], r["patches"] / r["cpu_seconds"],
                      f"{x['fast_over_reference']:.2f}x" if x else "",
                      f"{x['fast_over_reference_cpu']:.2f}x" if x else ""])
    return format_table(["extractor", "impl", "mode", "threads", "OMP wait", "patches/s",
                         "patches/cpu-s", "fast/ref", "fast/ref (cpu)"], table)


def _data_table(d: dict[str, Any], model_rows: list[dict]) -> str:
    table = [[k.replace("_images_per_s", ""), v] for k, v in d.items() if k.endswith("_per_s")]
    trains = [r for r in model_rows if r["backbone"] == "sdaie" and r["mode"] == "train"
              and r["implementation"] == "fast"]
    for r in trains:
        table.append([f"train step consumes (fast, {r['threads']} thr, {r['omp_wait']})",
                      r["patches_per_s"] / d["patches_per_image"]])
    return format_table(["data path", "images/s"], table)


def _bc_eval_table(rows: list[dict]) -> str:
    table = [[f"{r['size']}x{r['size']}", r["patches"], r["implementation"], r["threads"],
              r["omp_wait"], r.get("images_per_s", ""),
              f"{r['ratio']:.2f}x ({r['ratio_cpu']:.2f}x cpu)" if "ratio" in r else ""]
             for r in rows]
    return format_table(["bc_eval image", "patches", "impl", "threads", "OMP wait", "images/s",
                         "fast/ref"], table)


def _heatmap_table(rows: list[dict]) -> str:
    table = [[r["detector"], f"{r['size']}x{r['size']}", r["variant"], r["patches"],
              r["threads"], r["seconds"], r["cpu_seconds"], f"{r['over_detect']:.2f}x",
              f"{r['over_detect_cpu']:.2f}x"] for r in rows]
    return format_table(["heatmap", "image", "variant", "patches", "threads", "s/image",
                         "cpu-s/image", "over detect", "over detect (cpu)"], table)


def _scale_table(rows: list[dict]) -> str:
    nan = float("nan")
    table = [[f"{r['photos']:,}", r["disk_mb"], r["write_s"], r["load_s"] * 1000,
              r.get("rss_added_mb", nan), r.get("worker_private_start_mb", nan),
              r.get("worker_private_growth_mb", nan), r.get("worker_dirty_growth_mb", nan),
              r["pairs_per_s"]] for r in rows]
    return format_table(["index photos", "disk MB", "write s", "load ms", "RSS added MB",
                         "worker private MB", "+ over epoch MB", "of which dirty MB",
                         "pairs/s (index only)"], table)


def report(result: dict[str, Any]) -> str:
    """All tables of a result dict (whatever sections it has)."""
    env = result["environment"]
    parts = [f"CPU: {env['cpu']} ({env['cpu_count']} logical), torch {env['torch']}, "
             f"threads {env['threads_tested']}, OMP_WAIT_POLICY as given: "
             f"{env['omp_wait_policy']}, measured under: {env['omp_wait_measured']}, "
             f"GPU: {env['gpu'] or 'none'}, device {env['device']}"]
    model_rows = result.get("extractor", {}).get("rows", []) + result.get("resnet", [])
    if model_rows:
        parts.append(_model_table(result, model_rows))
    if "data" in result:
        parts.append(_data_table(result["data"], model_rows))
    if "gmm" in result:
        g = result["gmm"]
        parts.append(format_table(["GMM fit", "rows", "dim", "threads", "seconds", "EM iters"],
                                  [["sklearn full x5", g["rows"], g["dim"], g["threads"],
                                    g["seconds"], g["iterations"]]]))
    if "bc_eval" in result:
        parts.append(_bc_eval_table(result["bc_eval"]))
    if "evaluation" in result:
        parts.append(format_table(
            ["evaluation image", "patches", "detector", "threads", "images/s",
             "extractor alone, images/s", "ratio"],
            [[f"{r['size']}x{r['size']}", r["patches"], r["detector"], r["threads"],
              r["images_per_s"], r["reference_images_per_s"], f"{r['ratio']:.2f}x"]
             for r in result["evaluation"]]))
    if "heatmap" in result:
        parts.append(_heatmap_table(result["heatmap"]))
    if "scale" in result:
        parts.append(_scale_table(result["scale"]))
    parts.append(f"benchmark wall time: {result['wall_seconds']:.0f} s")
    return "\n\n".join(parts)
