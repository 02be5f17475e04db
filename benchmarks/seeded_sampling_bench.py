"""Seeded sampling benchmark: the cost of per-row seeds in the transformers backend, next to HF's own sampling.

    python benchmarks/seeded_sampling_bench.py [--out runs/bench/seeded_sampling_bench.json] [--device cpu]
                                              [--threads 1] [--repeats 7]

1. One sampling step on Qwen2.5's vocabulary (151,936 logits per row), per batch size and top_p:
   hf       HF's do_sample step: TopPLogitsWarper (when top_p < 1), softmax, torch.multinomial
   seeded   torl's SeededSampler: the same warpers, float64 softmax + CDF, one uniform per row from its own stream
2. End to end: `TransformersBackend.generate_batch` on a tiny local model, 16 requests x 64 tokens, without and
   with per-request seeds (the seeded path also builds each row's stream up front).
Medians of several repeats; ratio = seeded / hf (1.0 = free).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TopPLogitsWarper

from torl.rollout.backends.transformers_backend import SeededSampler

VOCAB = 151_936


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _hf_step(warp, ids, logits) -> torch.Tensor:
    scores = warp(ids, logits) if warp is not None else logits
    return torch.multinomial(torch.softmax(scores, -1), 1)


def step_rows(device: str, repeats: int) -> list[dict]:
    rows = []
    for batch in (1, 16, 64):
        for top_p in (1.0, 0.95):
            logits = torch.randn(batch, VOCAB, device=device) * 3
            ids = torch.zeros((batch, 8), dtype=torch.long, device=device)
            warp = TopPLogitsWarper(top_p) if top_p < 1 else None
            sampler = SeededSampler(list(range(batch)), [4] * batch, 7, 1.0, top_p)

            hf_s = _median_s(lambda w=warp, x=ids, s=logits: _hf_step(w, x, s), repeats)
            seeded_s = _median_s(lambda f=sampler, x=ids, s=logits: f(x, s), repeats)
            rows.append({"part": "step", "batch": batch, "top_p": top_p, "hf_ms": 1e3 * hf_s,
                         "seeded_ms": 1e3 * seeded_s, "ratio": seeded_s / hf_s})
    return rows


def generate_rows(device: str, repeats: int) -> list[dict]:
    from torl.rollout import GenerationRequest, build_prompt, make_backend
    from torl.train.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", seed=0)
        backend = make_backend("transformers", model, device=device, batch_wait_s=0.0)
        ids = [backend.tokenizer.encode(build_prompt(f"What is {i} + {i * 7}?")) for i in range(16)]
        plain = [GenerationRequest(x, 64, (), temperature=1.0, top_p=0.95) for x in ids]
        seeded = [GenerationRequest(x, 64, (), temperature=1.0, top_p=0.95, seed=i) for i, x in enumerate(ids)]
        hf_s = _median_s(lambda: backend.generate_batch(plain), repeats)
        seeded_s = _median_s(lambda: backend.generate_batch(seeded), repeats)
    return [{"part": "generate (tiny model)", "batch": 16, "top_p": 0.95, "hf_ms": 1e3 * hf_s,
             "seeded_ms": 1e3 * seeded_s, "ratio": seeded_s / hf_s}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench/seeded_sampling_bench.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = step_rows(args.device, args.repeats) + generate_rows(args.device, max(3, args.repeats // 2))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'part':<22}{'batch':>6}{'top_p':>7}{'hf ms':>10}{'seeded ms':>11}{'ratio':>7}")
    for r in rows:
        print(f"{r['part']:<22}{r['batch']:>6}{r['top_p']:>7}{r['hf_ms']:>10.2f}{r['seeded_ms']:>11.2f}"
              f"{r['ratio']:>7.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "rows": rows}, indent=2)
                   + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
