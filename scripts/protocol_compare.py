"""How much the evaluation protocol moves the numbers: ``spec`` vs ``official`` side by side.

    uv run sdaie demo --out runs/demo
    uv run python scripts/protocol_compare.py runs/demo --out runs/protocols

Uses the demo's trained detectors (pretext backbone, binary detector) and its synthetic world:

1. ``square``: the demo's test sets as they are (square 128-px images, even sides): only the
   one-class training order differs between the protocols (os.walk vs sorted listing);
2. ``odd``: the same images cut to seeded random non-square sizes (33..128 px per side, some
   below one patch, PNG so nothing else changes), where the transposed crop and the floored resize
   sizes matter; the binary run adds the square test sets as an in-the-wild root (spec: one pooled
   set averaged with the others; official: each sub-folder a set in a block of its own).

Each evaluation runs with ``oneclass.protocol`` / ``eval.protocol`` = spec, then official, with the
official patch caps in both (they never bind at these sizes). Writes ``protocols.md`` (tables side
by side, per-image score changes) into ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sdaie.stages import bc_eval, oc_main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny"
PERTS = ["jpeg=95", "blur=1.0", "resize=0.5"]


def odd_copy(src: Path, dst: Path, seed: int = 0) -> Path:
    """Every image of ``src`` cut to a seeded random size (33..128 per side), saved as PNG."""
    rng = np.random.default_rng(seed)
    if dst.exists():
        shutil.rmtree(dst)
    for f in sorted(src.rglob("*.jpg")):
        img = Image.open(f).convert("RGB")
        w, h = (int(rng.integers(33, img.width + 1)), int(rng.integers(33, img.height + 1)))
        left, top = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
        out = dst / f.relative_to(src).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        img.crop((left, top, left + w, top + h)).save(out)
    return dst


def run_both(demo: Path, tests: Path, out: Path, wild: Path | None) -> dict[str, Path]:
    """oc_main and bc_eval under each protocol; returns {run name: output folder}."""
    world = demo / "world"
    runs = {}
    for protocol in ("spec", "official"):
        oc_out, bc_out = out / f"oc_{protocol}", out / f"bc_{protocol}"
        assert oc_main.main([
            "--config", str(TINY / "oc.yaml"),
            f"oneclass.checkpoint={demo / 'backbone' / 'checkpoints' / 'last.pt'}",
            f"oneclass.train_dirs=[{world / 'bc_train' / '0_real'},{world / 'bc_val' / '0_real'}]",
            f"oneclass.test_root={tests}", f"run.out_dir={oc_out}", "run.seed=0",
            f"oneclass.protocol={protocol}", "oneclass.max_patches=20000",
            f"oneclass.perturbations=[{','.join(PERTS)}]"]) == 0
        assert bc_eval.main([
            "--config", str(TINY / "bc_eval.yaml"),
            f"eval.checkpoint={demo / 'bc' / 'checkpoints' / 'last.pt'}",
            f"eval.test_root={tests}", f"run.out_dir={bc_out}", "run.seed=0",
            f"eval.protocol={protocol}", "eval.max_patches=40000",
            f"eval.perturbations=[{','.join(PERTS)}]",
            *([f"eval.wild_dirs=[{wild}]"] if wild else [])]) == 0
        runs[f"oc_{protocol}"], runs[f"bc_{protocol}"] = oc_out, bc_out
    return runs


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    return {(r["perturbation"], r["set"]): r for r in csv.DictReader(open(path))}


def side_by_side(spec_csv: Path, official_csv: Path, ap: str) -> list[str]:
    """Markdown rows: block, set, acc and AP under each protocol and their differences (points)."""
    spec, off = _rows(spec_csv), _rows(official_csv)
    lines = [f"| block | set | acc spec | acc official | Δ acc | {ap} spec | {ap} official | Δ AP |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]

    def pct(row, key):
        return float(row[key]) * 100 if row and row.get(key) not in (None, "") else float("nan")

    for key in list(dict.fromkeys([*spec, *off])):
        a, b = spec.get(key), off.get(key)
        acc_a, acc_b, ap_a, ap_b = pct(a, "acc"), pct(b, "acc"), pct(a, ap), pct(b, ap)
        lines.append(f"| {key[0]} | {key[1]} | {acc_a:.1f} | {acc_b:.1f} | {acc_b - acc_a:+.1f} | "
                     f"{ap_a:.1f} | {ap_b:.1f} | {ap_b - ap_a:+.1f} |")
    return lines


def score_changes(spec_dir: Path, official_dir: Path) -> list[str]:
    """Per perturbation: images scored under both protocols, how many moved, the largest move."""
    lines = ["| perturbation | images in both | score changed | max abs change |", "|---|---:|---:|---:|"]
    for pdir in sorted((spec_dir / "scores").iterdir()):
        both, changed, worst = 0, 0, 0.0
        for f in sorted(pdir.glob("*.npz")):
            g = official_dir / "scores" / pdir.name / f.name
            if not g.exists():
                continue
            a, b = np.load(f), np.load(g)
            other = dict(zip(map(str, b["paths"]), b["scores"]))
            for path, s in zip(map(str, a["paths"]), a["scores"]):
                path = str(Path(path))
                match = next((v for k, v in other.items() if str(Path(k)) == path), None)
                if match is None:
                    continue
                both += 1
                changed += bool(abs(match - s) > 1e-9)
                worst = max(worst, float(abs(match - s)))
        lines.append(f"| {pdir.name} | {both} | {changed} | {worst:.4g} |")
    return lines


def report(runs_by_world: dict[str, dict[str, Path]]) -> str:
    parts = ["# Protocols side by side (synthetic world, demo detectors)", ""]
    for world, runs in runs_by_world.items():
        for det, ap, title in (("oc", "ap_real_pos", "one-class"), ("bc", "ap_fake_pos", "binary")):
            spec, off = runs[f"{det}_spec"], runs[f"{det}_official"]
            parts += [f"## {world}: {title}", ""]
            parts += side_by_side(spec / f"{det}_metrics.csv", off / f"{det}_metrics.csv", ap)
            parts += ["", "Per-image scores (same file under both protocols):", ""]
            parts += score_changes(spec, off) + [""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("demo", help="a finished `sdaie demo --out DIR` folder")
    p.add_argument("--out", default="runs/protocols")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (as the demo: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    demo, out = Path(args.demo), Path(args.out)
    odd = odd_copy(demo / "world" / "testsets", out / "odd_testsets")
    runs = {"square": run_both(demo, demo / "world" / "testsets", out / "square", None),
            "odd": run_both(demo, odd, out / "odd", demo / "world" / "testsets")}
    text = report(runs)
    (out / "protocols.md").write_text(text + "\n", encoding="utf-8")
    (out / "runs.json").write_text(json.dumps({w: {k: str(v) for k, v in r.items()}
                                               for w, r in runs.items()}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
