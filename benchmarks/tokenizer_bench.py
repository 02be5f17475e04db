"""Qwen2.5 tokenizer benchmark: the offline build (cold), the cached load, and encoding throughput against
tiktoken on the same ranks, same run.

    python benchmarks/tokenizer_bench.py [--strings 20000] [--out runs/bench/tokenizer_bench.json]

Rows: `build` = `build_qwen25_tokenizer_dir` into an empty directory (ranks -> vocabulary + one merge per token);
`load (cached)` = `qwen25_tokenizer()` on the built directory; `encode` = batch encoding of generated math/code/
unicode prompts with the built tokenizer (HF `tokenizers`, Rust) and with tiktoken (the baseline the ids must equal);
`agree` = share of strings whose ids are identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strings", type=int, default=20_000)
    ap.add_argument("--out", default="runs/bench/tokenizer_bench.json")
    args = ap.parse_args()

    import tiktoken
    import transformers  # noqa: F401 - imported before the clock starts
    from test_qwen25_tokenizer import _generated_strings  # the test's: math, code, unicode, whitespace

    from torl.models.qwen25 import SPLIT_PATTERN, build_qwen25_tokenizer_dir, load_ranks, qwen25_tokenizer

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        d = build_qwen25_tokenizer_dir(Path(tmp) / "qwen2.5")
        rows["build (cold)"] = time.perf_counter() - t
        t = time.perf_counter()
        tok = qwen25_tokenizer(d)
        rows["load (cached)"] = time.perf_counter() - t
    t = time.perf_counter()
    enc = tiktoken.Encoding("qwen", pat_str=SPLIT_PATTERN, mergeable_ranks=load_ranks(), special_tokens={})
    rows["tiktoken load"] = time.perf_counter() - t

    texts = _generated_strings(args.strings, seed=1)
    chars = sum(len(s) for s in texts)
    t = time.perf_counter()
    ours = tok(texts, add_special_tokens=False)["input_ids"]
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    theirs = enc.encode_ordinary_batch([unicodedata.normalize("NFC", s) for s in texts], num_threads=1)
    theirs_s = time.perf_counter() - t
    agree = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(texts)

    print("| step | seconds |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} |")
    print(f"\n| encode {len(texts)} strings ({chars / 1e6:.2f} M chars) | seconds | M chars/s |\n|---|---|---|")
    print(f"| torl qwen2.5 (tokenizers) | {ours_s:.2f} | {chars / ours_s / 1e6:.2f} |")
    print(f"| tiktoken (baseline) | {theirs_s:.2f} | {chars / theirs_s / 1e6:.2f} |")
    print(f"\nratio ours/tiktoken time: {ours_s / theirs_s:.2f}; identical ids: {100 * agree:.2f}% of strings")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**rows, "strings": len(texts), "chars": chars, "encode_s": ours_s,
                               "tiktoken_encode_s": theirs_s, "agree": agree}, indent=2) + "\n")


if __name__ == "__main__":
    main()
