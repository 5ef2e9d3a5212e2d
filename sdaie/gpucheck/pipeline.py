"""Section ``pipeline``: the whole method end to end on the device, with tiny sizes, through the
same ``sdaie`` commands a user runs: synthetic world -> index -> backbone (AMP) -> one-class ->
bc_train -> bc_eval -> detect. Each command's output goes to ``pipeline/<step>.log``.

The sizes are ``configs/tiny``'s, given as overrides (the check needs no config file). On a GPU
the backbone and the binary detector train under ``amp=auto`` (bf16, or fp16 with a gradient
scaler) with loader workers and pinned memory; with ``--cpu`` under CPU bf16 autocast.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from sdaie.cli import main as sdaie_main
from sdaie.gpucheck.plan import Plan
from sdaie.gpucheck.report import Section

TINY = ["model.width=8", "model.depths=[1,1,1,1]", "model.transformer_depth=1",
        "model.attn_heads=2", "model.dim_head=8", "model.mlp_dim=32", "model.patch_size=32",
        "data.patches=4", "run.seed=0"]


def commands(plan: Plan, out: Path) -> list[tuple[str, list[str]]]:
    """(step, ``sdaie`` arguments) of the pipeline into ``out``."""
    w, dev = out / "world", f"run.device={plan.device}"
    amp = "auto" if plan.device.type == "cuda" else "bf16"
    loader = ["data.workers=2", "data.pin_memory=true"] if plan.device.type == "cuda" else \
        ["data.workers=1"]
    bb, bc = out / "backbone" / "checkpoints" / "last.pt", out / "bc" / "checkpoints" / "last.pt"
    return [
        ("synthetic world", ["synth", str(w), "--photos", "24", "--size", "96", "--gen-images", "4",
                             "--bc-train", "16", "--bc-val", "4", "--quiet"]),
        ("EXIF index", ["index", str(w / "photos"), "--out", str(out / "index"), "--workers", "1",
                        "--no-progress"]),
        ("backbone (AMP)", ["backbone-train", *TINY, *loader, dev, f"pretext.amp={amp}",
                            f"data.index={out / 'index'}", f"run.out_dir={out / 'backbone'}",
                            "pretext.batch_size=4", "pretext.steps=6", "pretext.ckpt_every=3",
                            "pretext.log_every=3", "data.val_fraction=0.2"]),
        ("one-class", ["oc", *TINY, dev, f"oneclass.checkpoint={bb}",
                       f"oneclass.train_dirs=[{w / 'bc_train' / '0_real'}]",
                       f"oneclass.test_root={w / 'testsets'}", f"run.out_dir={out / 'oc'}",
                       "oneclass.components=1", "oneclass.max_patches=64",
                       "oneclass.batch_patches=64"]),
        ("bc_train", ["bc-train", *TINY, *loader, dev, f"binary.amp={amp}",
                      f"binary.pretext_checkpoint={bb}", f"binary.train_root={w / 'bc_train'}",
                      f"binary.val_root={w / 'bc_val'}", f"run.out_dir={out / 'bc'}",
                      "binary.epochs=1", "binary.batch_size=8", "binary.log_every=2"]),
        ("bc_eval", ["bc-eval", *TINY, dev, f"eval.checkpoint={bc}", f"eval.test_root={w / 'testsets'}",
                     f"run.out_dir={out / 'bc_eval'}", "eval.max_patches=64", "eval.batch_patches=64"]),
        ("detect", ["detect", "--checkpoint", str(bc), "--device", str(plan.device), "--out",
                    str(out / "detect.jsonl"), "--no-progress", str(w / "testsets")]),
    ]


def _run(argv: list[str], log: Path) -> tuple[int, str]:
    with open(log, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), \
            contextlib.redirect_stderr(fh):
        print("$ sdaie " + " ".join(argv), flush=True)
        try:
            return int(sdaie_main(argv) or 0), ""
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            return code, "" if code == 0 else str(exc.code)


def outputs(out: Path) -> dict[str, Any]:
    """What the pipeline left behind: the detect rows, the metric tables."""
    rows = [json.loads(line) for line in (out / "detect.jsonl").read_text().splitlines() if line]
    return {"detect_rows": len(rows), "detect_errors": sum("error" in r for r in rows),
            "oc_table": (out / "oc" / "oc_metrics.csv").is_file(),
            "bc_table": (out / "bc_eval" / "bc_metrics.csv").is_file()}


def check_pipeline(plan: Plan, work: Path) -> Section:
    out = work / "pipeline"
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], None
    for i, (step, argv) in enumerate(commands(plan, out)):
        start = time.perf_counter()
        code, message = _run(argv, out / f"{i + 1}_{argv[0]}.log")
        shown = [a for a in argv if a.startswith(("run.device=", "pretext.amp=", "binary.amp="))]
        rows.append({"step": step, "command": " ".join(["sdaie", argv[0], *shown]),
                     "seconds": time.perf_counter() - start, "exit": code})
        if code != 0:
            failed = f"{step} exited {code}: {message} (log: {out})"
            break
    if failed:
        return Section("pipeline", "End to end on the device", "fail", failed, rows)
    facts = outputs(out)
    ok = facts["detect_rows"] > 0 and not facts["detect_errors"] and facts["oc_table"] \
        and facts["bc_table"]
    summary = (f"7 steps on {plan.device}: {facts['detect_rows']} images scored by detect, "
               "one-class and binary tables written" if ok else f"missing outputs: {facts}")
    notes = [f"full commands and their output: {out}/<n>_<command>.log (tiny sizes; a world of "
             "24 photos of 96 px)"]
    return Section("pipeline", "End to end on the device", "ok" if ok else "fail", summary, rows,
                   notes, facts=facts)
