"""Run under a 2-process launch: rank 0 "pushes weights" for 2 s, then every rank passes the server-mode barrier.
Writes how long rank 1 waited (and the mode) to argv[1].rank1.json."""

import json
import sys
import time
from types import SimpleNamespace

from accelerate import Accelerator

from torl.train.vllm_sync import server_generation_barrier


def main() -> None:
    out, mode = sys.argv[1], sys.argv[2]
    acc = Accelerator(cpu=True)
    trainer = SimpleNamespace(use_vllm=True, vllm_generation=SimpleNamespace(mode=mode), accelerator=acc)
    acc.wait_for_everyone()
    start = time.perf_counter()
    if acc.process_index == 0:
        time.sleep(2.0)  # rank 0 is still pushing the new weights to the server
    server_generation_barrier(trainer)
    waited = time.perf_counter() - start
    if acc.process_index == 1:
        with open(f"{out}.rank1.json", "w") as f:
            json.dump({"waited_s": waited, "mode": mode, "world": acc.num_processes}, f)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
