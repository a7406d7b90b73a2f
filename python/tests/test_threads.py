"""One Decomposer shared by 4 Python threads: the same results as serial calls, and faster (the GIL
is released while a frame is decomposed)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msf
import numpy as np

THREADS = 4


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def control_speedup() -> float:
    """What this machine gives 4 threads right now: hashlib releases the GIL on large buffers, so
    4 threads hashing in parallel are as much faster than one as there are CPUs to spare."""
    data = [bytes([i]) * 16_000_000 for i in range(8)]
    t0 = time.perf_counter()
    for d in data:
        hashlib.sha256(d).digest()
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda d: hashlib.sha256(d).digest(), data))
    return t_serial / (time.perf_counter() - t0)


def test_four_threads_equal_serial_calls_and_run_in_parallel(slate, photos):
    dec = msf.Decomposer(slate, threads=1)  # one kernel thread per call: parallelism comes from the callers
    rng = np.random.default_rng(7)
    frames = [img for img in photos.values()] + [rng.integers(0, 256, (120, 160, 3), np.uint8) for _ in range(11)]
    frames = frames * 2  # 32 frames
    dec.decompose(frames[0])  # plan built, caches warm

    best, control = 0.0, 0.0
    for _ in range(4):  # best of four rounds: other processes may hold the CPUs for a moment
        t0 = time.perf_counter()
        serial = [dec.decompose(f) for f in frames]
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            parallel = list(pool.map(dec.decompose, frames))
        t_parallel = time.perf_counter() - t0
        for i, (a, b) in enumerate(zip(serial, parallel)):
            assert np.array_equal(a.masks, b.masks), f"frame {i}"
            assert np.array_equal(a.slots, b.slots), f"frame {i}"
        speedup = t_serial / t_parallel
        control = max(control, control_speedup())
        print(f"msf-python: {len(frames)} frames on one Decomposer(threads=1): serial {len(frames) / t_serial:.1f} frames/s, "
              f"{THREADS} Python threads {len(frames) / t_parallel:.1f} frames/s: speed-up {speedup:.2f}x on {cpus()} CPUs "
              f"(hashlib's on {THREADS} threads, the machine's spare CPUs: {control:.2f}x)")
        best = max(best, speedup)
        if best >= 1.4:
            break
    # With the GIL held the calls would take turns: no speed-up at all. A machine whose other
    # processes leave this one a single CPU cannot show one either; hashlib says which it is.
    if best < 1.2 and control < 1.5:
        print(f"msf-python: speed-up not checked: other processes leave this one about one CPU (hashlib {control:.2f}x)")
        return
    assert best >= 1.2, f"4 threads only {best:.2f}x faster than serial calls (hashlib: {control:.2f}x)"


def test_python_runs_while_a_frame_is_decomposed(slate, photos):
    """The GIL is free during decompose: the main thread, waking every millisecond, gets the GIL
    back at once while another thread decomposes (with the GIL held it would wait for every call)."""
    dec = msf.Decomposer(slate, threads=1)
    img = photos["hubble_deep_field"]
    t0 = time.perf_counter()
    dec.decompose(img)
    call = time.perf_counter() - t0
    done = threading.Event()

    def work():
        for _ in range(6):
            dec.decompose(img)
        done.set()

    t = threading.Thread(target=work)
    blocked, last = 0.0, time.perf_counter()
    t0 = last
    t.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        if now - last > max(0.02, call / 3):
            blocked += now - last
        last = now
    t.join()
    wall = time.perf_counter() - t0
    print(f"msf-python: a thread decomposing 6 frames ({1000 * call:.0f} ms each) kept the main thread "
          f"waiting {1000 * blocked:.0f} ms of {1000 * wall:.0f} ms")
    assert blocked < 0.5 * wall, f"the main thread waited {blocked:.3f} s of {wall:.3f} s"


def test_trackers_on_threads(slate, photos):
    dec = msf.Decomposer(slate, threads=1)
    seq = [photos["ihc"], photos["camera"], photos["logo"]] * 2

    def stream(_):
        tr = msf.Tracker(dec)
        return [tr.step(f).masks for f in seq]

    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(stream, range(3)))
    for r in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], r))
