"""The run directory: one place for a run's resolved config, checkpoints, logs, metrics and sample dumps.

    RUN_DIR/config.yaml            the resolved config (every default filled in)
    RUN_DIR/run.json               versions, world size, data report, one entry per (re)start
    RUN_DIR/train.log              the log
    RUN_DIR/metrics.jsonl          one record per step (and step 0 validation)
    RUN_DIR/tensorboard/           the same scalars for TensorBoard
    RUN_DIR/samples/step_NNNNNN.jsonl   every response of every step (LIMR's input)
    RUN_DIR/val/step_NNNNNN.jsonl  validation responses (+ .json summary)
    RUN_DIR/checkpoint-N/          model, optimizer, scheduler, RNG and trainer state (data position)
    RUN_DIR/final/                 the final model and tokenizer
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from torl.errors import UserInputError
from torl.train.config import TorlTrainConfig, non_resumable_changes
from torl.train.metrics import METRICS_FILE, truncate_metrics
from torl.train.recorder import remove_dumps_after

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
LOG_FILE = "train.log"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class RunComplete(Exception):  # noqa: N818 - not an error: the run is done
    """`--resume` on a run whose last checkpoint already reached train.max_steps: there is nothing to train.
    Raised before anything is written; `torl train` prints it and exits 0."""


@dataclass
class RunDirState:
    """resume_from: the checkpoint to continue from (None: a fresh start). step: its step (0 when fresh)."""

    resume_from: str | None
    step: int


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (trainer_state.json is written last), oldest first."""
    out = []
    root = Path(run_dir)
    if not root.is_dir():
        return []
    for p in root.iterdir():
        m = _CHECKPOINT.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def last_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def saved_config(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def has_progress(run_dir: str | Path) -> bool:
    root = Path(run_dir)
    return bool(checkpoints(root)) or (root / METRICS_FILE).exists() or any((root / "samples").glob("step_*"))


def prepare_run_dir(cfg: TorlTrainConfig, *, resume: bool, is_main: bool = True) -> RunDirState:
    """Check the directory against the request (fresh start or resume), clean what a resume redoes, write the
    resolved config. Raises UserInputError when a fresh run would overwrite one, or a resume changes the math;
    RunComplete (having written nothing) when a resumed run has already reached train.max_steps."""
    root = Path(cfg.run_dir)
    old = saved_config(root)
    if not resume and has_progress(root):
        raise UserInputError(f"{root} already holds a run; pass --resume to continue it, or choose another run_dir")
    state = RunDirState(None, 0)
    if resume:
        if old is not None:
            changed = non_resumable_changes(old, cfg.to_dict())
            if changed:
                raise UserInputError(f"--resume: the config differs from {root / CONFIG_FILE} in {', '.join(changed)}"
                                     " (these change the optimisation; start a new run_dir instead)")
        found = last_checkpoint(root)
        if found is None:
            log.warning("--resume: no complete checkpoint in %s; starting from step 0", root)
        elif found[0] >= cfg.train.max_steps:
            raise RunComplete(f"{root} is complete: {found[1].name} reached train.max_steps={cfg.train.max_steps}; "
                              f"nothing to do (to train further, resume with a larger train.max_steps, e.g. "
                              f"train.max_steps={found[0] + cfg.train.max_steps})")
        else:
            state = RunDirState(str(found[1]), found[0])
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        if resume:
            dropped = truncate_metrics(root, state.step)
            removed = remove_dumps_after(root, state.step)
            removed_val = _remove_val_after(root, state.step)
            if dropped or removed or removed_val:
                log.info("resume from step %d: dropped %d metric records, %d sample dumps and %d validation files "
                         "of steps after it", state.step, dropped, removed, removed_val)
        tmp = root / f".{CONFIG_FILE}.tmp"
        tmp.write_text(cfg.to_yaml(), encoding="utf-8")
        tmp.replace(root / CONFIG_FILE)  # atomic: other processes may be reading it
    return state


def record_start(run_dir: str | Path, info: dict) -> None:
    """Append this (re)start's facts to RUN_DIR/run.json."""
    path = Path(run_dir) / RUN_FILE
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"starts": []}
    data["starts"].append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(), **info})
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def attach_log_file(run_dir: str | Path) -> logging.Handler:
    """Copy torl's, TRL's and transformers' log records into RUN_DIR/train.log."""
    handler = logging.FileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("torl", "trl", "transformers.trainer"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    for name in ("torl", "trl", "transformers.trainer"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def _remove_val_after(root: Path, step: int) -> int:
    n = 0
    for p in (root / "val").glob("step_*"):
        m = re.match(r"step_(\d+)\.", p.name)
        if m and int(m.group(1)) > step:
            p.unlink()
            n += 1
    return n


def tied_missing_keys(model, missing: list[str]) -> list[str]:
    """The keys in `missing` (from loading a checkpoint into `model`) that are the very tensor of a loaded parameter:
    with tied embeddings, save_pretrained stores the shared weight once, so lm_head.weight is "missing" while it was
    loaded as embed_tokens.weight. Those are harmless; the others are not."""
    params = dict(model.named_parameters(remove_duplicate=False))
    missing_set = set(missing)
    loaded = {id(p) for name, p in params.items() if name not in missing_set}
    return [k for k in missing if k in params and id(params[k]) in loaded]
