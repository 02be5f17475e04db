"""Grading from threads and from other processes gives the same results as from the main thread."""

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

from torl.reward import Grader, grade_many, is_equivalent

from .helpers import load_cases

# a mix of pairs decided in-process and pairs that need math-verify in a worker
PAIRS = [(p, g) for p, g, *_ in load_cases()]


def test_eight_threads_agree_with_the_main_thread(grader):
    preds, golds = zip(*PAIRS, strict=True)
    expected = [v.equal for v in grader.verdicts(list(preds), list(golds))]
    assert threading.current_thread() is threading.main_thread()

    with Grader(2) as fresh:  # its own cache, so the threads really compute

        def one(k: int) -> bool:
            assert threading.current_thread() is not threading.main_thread()
            return fresh.is_equivalent(PAIRS[k][0], PAIRS[k][1])

        with ThreadPoolExecutor(max_workers=8) as ex:
            results = list(ex.map(one, range(len(PAIRS))))
        assert results == expected
        stats = fresh.stats
        assert stats.worker > 0 and stats.timeouts == 0 and stats.errors == 0


def test_module_functions_in_threads():
    """The default grader from non-main threads, including a pair only math-verify can decide."""
    out = {}

    def work(i: int) -> None:
        out[i] = (
            is_equivalent("\\cot x", "\\frac{\\cos x}{\\sin x}"),
            grade_many(["p-q", "3"], ["-q+p", "4"]),
        )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {i: (True, [True, False]) for i in range(4)}


def _grade_in_child(pairs):
    preds, golds = zip(*pairs, strict=True)
    return grade_many(list(preds), list(golds), processes=1)


def test_process_pool_agrees_with_the_main_thread(grader):
    preds, golds = zip(*PAIRS, strict=True)
    expected = [v.equal for v in grader.verdicts(list(preds), list(golds))]
    chunks = [PAIRS[k : k + 60] for k in range(0, len(PAIRS), 60)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = [r for chunk in pool.map(_grade_in_child, chunks) for r in chunk]
    assert results == expected
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = [r for chunk in pool.map(_grade_in_child, chunks) for r in chunk]
    assert results == expected


def test_a_forked_child_neither_uses_nor_kills_the_parents_workers():
    import os

    def worker_pids(g: Grader) -> set[int]:
        return {w.proc.pid for w in g._pool._live}

    with Grader(1) as g:
        assert g.is_equivalent("p-q", "-q+p")  # the parent's worker is up
        parent_pids = worker_pids(g)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: grade with the inherited grader, report its workers, close it
            ok = False
            try:
                ok = g.is_equivalent("\\cot x", "\\frac{\\cos x}{\\sin x}") and not g.is_equivalent("p", "q")
                os.write(write_end, " ".join(map(str, worker_pids(g))).encode())
                g.close()
            finally:
                os._exit(0 if ok else 1)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        child_pids = {int(x) for x in os.read(read_end, 1000).split()}
        os.close(read_end)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_pids and not child_pids & parent_pids  # the child started its own worker
        assert g.is_equivalent("x^2-1", "(x-1)(x+1)")
        assert worker_pids(g) == parent_pids and g.stats.worker_restarts == 0
