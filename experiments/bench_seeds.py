"""Many seeds in one program vs one after another: throughput of the vmapped train step.

  python -m experiments.bench_seeds [--models=4] [--hidden=64,256] [--repeats=7]

Times the real train step of `experiments/configs/kws.py:lstm` (features, model, loss, Adam) on
random 1-second audio batches: N models stacked on a leading axis and `jax.vmap`-ed in ONE jitted
program, against the single-model program run N times. Repeats are interleaved; prints medians and
the ratio vmapped / sequential throughput (> 1: one program is faster), and the minor page faults
of each (getrusage). The sweep runner's setting is one pinned single-threaded process:

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
      taskset -c 0 python -m experiments.bench_seeds --models=3
  GLIBC_TUNABLES=glibc.malloc.hugetlb=0 ...   # without huge pages
"""

import argparse
import os
import resource
import statistics
import time

from rnnbench import hugepages


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--hidden", default="64,256")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments.configs import kws
    from rnnbench import data as data_lib
    from rnnbench import train

    n = args.models
    rng = np.random.default_rng(0)
    fake = data_lib.Dataset("fake", "classify", [str(i) for i in range(12)], {})
    batch = {"audio": rng.normal(0, 0.1, (64, 16000)).astype(np.float32),
             "audio_lengths": np.full((64,), 16000, np.int32),
             "labels": rng.integers(0, 12, 64).astype(np.int32),
             "weights": np.ones((64,), np.float32)}
    stacked = {k: np.stack([v] * n) for k, v in batch.items()}
    print(f"# {jax.devices()[0].device_kind}, {jax.device_count()} device(s), N={n}, batch 64 "
          f"per model, T=101 frames (51 after the stride-2 front-end), "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    for hidden in [int(h) for h in args.hidden.split(",")]:
        config = kws.get_config("lstm")
        config.model.hidden = hidden
        graphdef, state, tx, _ = train.init_state(config, fake)
        step, _ = train.make_steps(config, graphdef, tx, "classify")
        single = jax.jit(step)
        many = jax.jit(jax.vmap(step))
        states = jax.tree.map(lambda *xs: jnp.stack(xs), *[state] * n)
        single_state = state
        for _ in range(2):  # compile + warm up
            single_state, m = single(single_state, batch)
            states, mm = many(states, stacked)
        jax.block_until_ready((m, mm))
        t_seq, t_vmap, f_seq, f_vmap = [], [], [], []
        for _ in range(args.repeats):
            f0, t0 = faults(), time.perf_counter()
            for _ in range(n):
                single_state, m = single(single_state, batch)
            jax.block_until_ready(m)
            t_seq.append(time.perf_counter() - t0)
            f_seq.append(faults() - f0)
            f0, t0 = faults(), time.perf_counter()
            states, mm = many(states, stacked)
            jax.block_until_ready(mm)
            t_vmap.append(time.perf_counter() - t0)
            f_vmap.append(faults() - f0)
        seq, vm = statistics.median(t_seq), statistics.median(t_vmap)
        print(f"H={hidden:4d}: {n} sequential steps {seq * 1e3:7.1f} ms "
              f"({statistics.median(f_seq):.0f} faults) | one vmapped step of {n} models "
              f"{vm * 1e3:7.1f} ms ({statistics.median(f_vmap):.0f} faults) | "
              f"vmapped/sequential throughput {seq / vm:.2f}x")


if __name__ == "__main__":
    hugepages.ensure()
    main()
