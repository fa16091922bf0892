"""The sweep runner: grid helpers, run naming, bad input, W&B sweep files, and end-to-end sweeps of
a tiny synth_commands config (each run a subprocess): a forced failure that does not stop the
others, a SIGKILLed sweep that resumes without retraining finished runs, the submitit backend."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import yaml

from rnnbench import grid
from rnnbench import sweep as sw
from rnnbench.sweep import chain, product, sweep, zip_

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TINY_CONFIG = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import toy
    from rnnbench.sweep import chain, product, sweep, zip_


    def get_config(variant="gru"):
        c = toy.small_config(variant, hidden=8)
        c.dataset = "synth_commands"
        c.data.options = {{"train_size": 48, "validation_size": 16, "test_size": 16}}
        c.num_steps = 4
        c.eval_every = 4
        c.checkpoint_every = 2
        return c


    def sweeps():
        return {{
            # 3 runs that train + 1 that fails at run time (a batch larger than its data: only
            # the run, which loads the data, can tell; config values are checked up front)
            "four": chain(sweep("seed", [0, 1]), {{"model.hidden": 12}},
                          {{"batch_size": 64, "model.hidden": 8}}),
            "two": sweep("model.hidden", [8, 12]),
            "seeds": sweep("seed", [0, 1]),
            "big": product(sweep("model.cell", ["rnn", "gru"]), sweep("model.hidden", [8, 16]),
                           sweep("seed", [0, 1, 2])),
            "zipped": zip_(sweep("model.hidden", [8, 16]), sweep("model.layers", [1, 2])),
            "typo": [{{"model.hiden": 8}}],
        }}
""")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_CONFIG.format(tests=HERE))
    return str(path)


def _cli(args, cache_dir, **kw):
    env = dict(os.environ, RNNBENCH_CACHE=cache_dir, JAX_PLATFORMS="cpu", WANDB_SILENT="true")
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def _sweep_json(d):
    with open(os.path.join(d, "sweep.json")) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- helpers, naming


def test_product_zip_chain():
    assert sweep("model.cell", ["rnn", "gru"]) == [{"model.cell": "rnn"}, {"model.cell": "gru"}]
    g = product(sweep("a", [1, 2]), sweep("b", ["x", "y"]), {"c": True})
    assert g == [
        {"a": 1, "b": "x", "c": True},
        {"a": 1, "b": "y", "c": True},
        {"a": 2, "b": "x", "c": True},
        {"a": 2, "b": "y", "c": True},
    ]
    assert zip_(sweep("a", [1, 2]), sweep("b", [3, 4])) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    with pytest.raises(ValueError, match="equal length"):
        zip_(sweep("a", [1, 2]), sweep("b", [3]))
    assert chain(sweep("a", [1]), {"b": 2}, [{}]) == [{"a": 1}, {"b": 2}, {}]
    assert product(chain({}, {"x": 1}), sweep("seed", [0, 1])) == [
        {"seed": 0},
        {"seed": 1},
        {"x": 1, "seed": 0},
        {"x": 1, "seed": 1},
    ]


def test_run_names_are_readable_unique_and_safe():
    grid = product(sweep("model.cell", ["gru"]), sweep("model.hidden", [128]), sweep("seed", [1]))
    assert sw.run_names(grid) == ["cell=gru,hidden=128,seed=1"]
    # colliding last components get more of their path; floats, bools, odd characters
    grid = [
        {"model.dropout": 0.1, "data.dropout": 1e-5, "model.residual": True},
        {"data_dir": "/a b/c"},
        {},
    ]
    assert sw.run_names(grid) == [
        "model.dropout=0.1,data.dropout=1e-05,residual=true",
        "data_dir=_a_b_c",
        "default",
    ]
    # stable: same grid, same names; sanitising collisions still give unique names
    names = sw.run_names([{"x": "a/b"}, {"x": "a_b"}])
    assert names == ["x=a_b", "x=a_b~2"]
    long = sw.run_names([{"k": "v" * 400}])[0]
    assert len(long) <= 180 and "/" not in long


def test_seed_groups_and_commands(config_file, tmp_path):
    s = sw.resolve(config_file, "big", str(tmp_path / "sw"))
    units = sw.make_units(s.runs, vmap_seeds=True)
    assert len(units) == 4 and all(u.seeds == [0, 1, 2] for u in units)
    assert [r.name for r in units[0].runs] == [f"cell=rnn,hidden=8,seed={i}" for i in range(3)]
    argv = sw.command(s, units[0], "offline")
    i_cfg = argv.index(f"--config={config_file}")
    assert all(i_cfg < argv.index(a) for a in argv if a.startswith("--config."))
    assert "--seeds=0,1,2" in argv and not any(a.startswith("--config.seed") for a in argv)
    workdirs = next(a for a in argv if a.startswith("--workdir="))[len("--workdir=") :]
    from absl import flags as absl_flags  # experiments.train parses --workdir as an absl list

    assert absl_flags.ListParser().parse(workdirs) == [r.workdir for r in units[0].runs]
    assert "--config.model.cell=rnn" in argv and "--config.wandb.group=tiny-big" in argv
    # without vmap: one subprocess per run, seed as a config override
    units = sw.make_units(s.runs, vmap_seeds=False)
    assert len(units) == 12 and units[1].seeds is None
    argv = sw.command(s, units[1], "disabled")
    assert "--config.seed=1" in argv and f'--workdir="{s.runs[1].workdir}"' in argv
    assert absl_flags.ListParser().parse(f'"{s.runs[1].workdir}"') == [s.runs[1].workdir]
    # the log and unit names of a seed group: the shared overrides, then the seeds
    assert sw.make_units(s.runs, vmap_seeds=True)[0].name == "cell=rnn,hidden=8,seeds=0-1-2"
    env = sw.child_env({0})
    assert "xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert "glibc.malloc.hugetlb=1" in env["GLIBC_TUNABLES"]
    assert (
        "XLA_FLAGS" not in sw.child_env(None)
        or "eigen=false" not in sw.child_env(None)["XLA_FLAGS"]
    )


def test_cpu_slots_split_the_cores(monkeypatch):
    """Each of `parallel` children gets its own share of the cores (wrapping round when there
    are more children than cores); unpinned children get None."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert sw.cpu_slots(2, pin=True) == [{0, 1}, {2, 3}]
    assert sw.cpu_slots(4, pin=True) == [{0}, {1}, {2}, {3}]
    assert sw.cpu_slots(3, pin=True) == [{0}, {1}, {2}]
    assert sw.cpu_slots(6, pin=True) == [{0}, {1}, {2}, {3}, {0}, {1}]
    assert sw.cpu_slots(2, pin=False) == [None, None]


def test_the_vocabulary_is_grid_s():
    """rnnbench.sweep re-exports rnnbench.grid's helpers and records (config files import them
    from either); seed grouping and key order as the report and the runner both use them."""
    assert (sw.sweep, sw.product, sw.zip_, sw.chain, sw.Run, sw.Sweep, sw.run_names) == (
        grid.sweep,
        grid.product,
        grid.zip_,
        grid.chain,
        grid.Run,
        grid.Sweep,
        grid.run_names,
    )
    g = product(sweep("model.cell", ["lstm", "gru"]), sweep("seed", [0, 1]))
    assert grid.config_key(g[1]) == '{"model.cell": "lstm"}'
    assert list(grid.group_by_config(g).values()) == [g[:2], g[2:]]
    assert grid.fmt_value(1e-4) == "0.0001" and grid.fmt_value([1, 2]) == "1-2"
    assert grid.fmt_value(False) == "false" and grid.fmt_value("gru") == "gru"
    # sweep.json may hold overrides with sorted keys: the run names keep the grid's order
    assert grid.key_order(["model.layers", "model.cell"], ["cell=gru,layers=2,seed=0"]) == [
        "model.cell",
        "model.layers",
    ]
    s = grid.Sweep("runs/x", [], config_arg="experiments/configs/kws.py:lstm", name="cells")
    assert (s.config_path, s.variant, s.group) == (
        "experiments/configs/kws.py",
        "lstm",
        "kws-cells",
    )


def test_sweep_json_records_how_the_runner_runs(config_file, tmp_path):
    s = sw.resolve(config_file, "seeds", str(tmp_path / "sw"))
    runner = sw.runner_record(
        backend="local", parallel=2, vmap_seeds=True, pin=False, wandb_mode="disabled"
    )
    sw.State(s, runner).write()
    saved = _sweep_json(s.sweep_dir)["runner"]
    assert {k: saved[k] for k in ("backend", "parallel", "vmap_seeds", "pin", "wandb")} == {
        "backend": "local",
        "parallel": 2,
        "vmap_seeds": True,
        "pin": False,
        "wandb": "disabled",
    }
    from rnnbench import provenance

    assert saved["git_commit"] == provenance.git_commit() and saved["cores"] == os.cpu_count()
    # the report rebuilds the runner's command with those settings
    from rnnbench import report

    cmd = report.sweep_command(_sweep_json(s.sweep_dir), s.sweep_dir)
    assert f"--sweep=seeds --workdir={s.sweep_dir} --parallel=2 --vmap_seeds=true" in cmd


# ----------------------------------------------------------------------------- bad input


def test_unknown_sweep_bad_override_and_foreign_dir(config_file, tmp_path, cache_dir):
    d = str(tmp_path / "sw")
    with pytest.raises(sw.SweepError, match=r"unknown sweep 'nope'.*known: four, two"):
        sw.resolve(config_file, "nope", d)
    with pytest.raises(sw.SweepError, match=r"no field 'model.hiden'"):
        sw.resolve(config_file, "typo", d)
    with pytest.raises(sw.SweepError, match=r"no field 'optimizer.lr'"):
        sw.resolve(config_file, "two", d, ["optimizer.lr=0.1"])
    with pytest.raises(sw.SweepError, match=r"num_steps=lots"):
        sw.resolve(config_file, "two", d, ["num_steps=lots"])
    with pytest.raises(sw.SweepError, match="swept by 'two' itself"):
        sw.resolve(config_file, "two", d, ["model.hidden=4"])
    with pytest.raises(sw.SweepError, match="key=value"):
        sw.resolve(config_file, "two", d, ["num_steps"])
    # every run's config is checked before any is launched: one error, naming a run
    with pytest.raises(sw.SweepError, match=r"run hidden=\d+.*: config.num_steps must be"):
        sw.resolve(config_file, "two", d, ["num_steps=0"])
    with pytest.raises(sw.SweepError, match=r"learning_rate"):
        sw.resolve(config_file, "two", d, ["optimizer.learning_rate=-0.1"])
    # a sweep dir holding another sweep is refused, naming what differs
    sw.State(sw.resolve(config_file, "two", d)).write()
    sw.State(sw.resolve(config_file, "two", d))  # the same sweep again is fine
    with pytest.raises(sw.SweepError, match=r"different sweep \(sweep name: 'two' there"):
        sw.State(sw.resolve(config_file, "seeds", d))
    with pytest.raises(sw.SweepError, match=r"--override values"):
        sw.State(sw.resolve(config_file, "two", d, ["num_steps=3"]))
    with pytest.raises(sw.SweepError, match=r"config variant"):
        sw.State(sw.resolve(config_file + ":lstm", "two", d))
    # the CLI: message on stderr, exit status 2, nothing trained
    r = _cli([f"--config={config_file}", "--sweep=typo", f"--workdir={tmp_path / 'x'}"], cache_dir)
    assert r.returncode == 2 and "no field 'model.hiden'" in r.stderr
    assert not os.path.exists(tmp_path / "x")
    r = _cli([f"--config={config_file}", "--sweep=seeds", f"--workdir={d}"], cache_dir)
    assert r.returncode == 2 and "holds a different sweep" in r.stderr


def test_a_sweep_dir_resumes_from_another_checkout(tmp_path):
    """sweep.json written by a clone elsewhere (or a git worktree) names the same config file by
    another absolute path: the sweep is the same one; another file is still refused."""
    d = str(tmp_path / "sw")
    config = os.path.join(sw.REPO_ROOT, "experiments/configs/tts.py")
    sw.State(sw.resolve(config, "gru", d)).write()
    path = os.path.join(d, "sweep.json")
    with open(path) as f:
        spec = json.load(f)
    for other, same in (("tts.py", True), ("kws.py", False)):
        spec["identity"]["config"] = f"/old/clone/experiments/configs/{other}"
        with open(path, "w") as f:
            json.dump(spec, f)
        if same:
            sw.State(sw.resolve(config, "gru", d))
        else:
            with pytest.raises(sw.SweepError, match=r"config file: '/old/clone/.*/kws.py' there"):
                sw.State(sw.resolve(config, "gru", d))
    assert sw.same_config_file("/a/b.py", "/a/b.py")
    assert not sw.same_config_file("/tmp/x/b.py", "/other/tmp/x/b.py")  # not in the repository


def test_vmap_seeds_default_follows_the_platform(monkeypatch):
    # CPU only (JAX_PLATFORMS decides when set): one run per subprocess, measured faster here
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert sw.cpu_only() and not sw.should_vmap_seeds() and sw.should_pin(2)
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert not sw.cpu_only() and sw.should_vmap_seeds() and not sw.should_pin(2)


def test_dry_run_without_vmap_lists_one_subprocess_per_run(config_file, tmp_path, cache_dir):
    r = _cli(
        [
            f"--config={config_file}:lstm",
            "--sweep=big",
            f"--workdir={tmp_path / 'd'}",
            "--dry_run",
            "--vmap_seeds=false",
        ],
        cache_dir,
    )
    assert r.returncode == 0, r.stderr
    assert "12 runs, 0 done, 12 subprocess(es) to start;" in r.stdout
    assert "--seeds" not in r.stdout and "--config.seed=0" in r.stdout


def test_dry_run_prints_runs_without_training(config_file, tmp_path, cache_dir):
    d = tmp_path / "dry"
    r = _cli(
        [
            f"--config={config_file}:lstm",
            "--sweep=big",
            f"--workdir={d}",
            "--dry_run",
            "--override=num_steps=2",
            "--vmap_seeds=true",
        ],
        cache_dir,
    )
    assert r.returncode == 0, r.stderr
    assert "12 runs, 0 done, 4 subprocess(es) to start (seeds vmapped)" in r.stdout
    assert "cell=gru,hidden=16,seed=2" in r.stdout and "model.cell=gru model.hidden=16" in r.stdout
    assert "every run: num_steps=2" in r.stdout and "--seeds=0,1,2" in r.stdout
    assert not d.exists()


# ----------------------------------------------------------------------------- W&B sweep files


def test_wandb_sweep_file(config_file, tmp_path):
    s = sw.resolve(config_file + ":lstm", "big", str(tmp_path / "wb"), ["num_steps=3"])
    (path,) = sw.wandb_sweep_files(s)
    spec = yaml.safe_load(open(path))
    assert spec["method"] == "grid"
    assert set(spec["parameters"]) == {"config.model.cell", "config.model.hidden", "config.seed"}
    assert spec["parameters"]["config.model.hidden"]["values"] == [8, 16]
    cmd = spec["command"]
    assert cmd[:4] == ["${env}", "python3", "-m", "experiments.train"]
    assert cmd[4] == f"--config={config_file}:lstm" and cmd[-1] == "${args}"
    assert "--config.num_steps=3" in cmd
    try:
        with warnings.catch_warnings():  # pydantic v1-style deprecations inside `sweeps`
            warnings.simplefilter("ignore")
            from sweeps.config import schema_violations_from_proposed_config
    except ImportError:
        pytest.skip("the `sweeps` package (W&B's sweep config schema) is not installed")
    assert schema_violations_from_proposed_config(spec) == []
    # a chain of product blocks: one file per block; a zip is not a grid: clear error
    s = sw.resolve(config_file, "four", str(tmp_path / "wb4"))
    paths = sw.wandb_sweep_files(s)
    assert len(paths) == 3
    for p in paths:
        assert schema_violations_from_proposed_config(yaml.safe_load(open(p))) == []
    with pytest.raises(sw.SweepError, match="not a full product"):
        sw.wandb_sweep_files(sw.resolve(config_file, "zipped", str(tmp_path / "wbz")))


# ----------------------------------------------------------------------------- end to end


def _children_of(sweep_dir):
    """pids of live processes whose command line names the sweep dir (the runner's children)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().split()[2] == "Z"
        except OSError:
            continue
        if sweep_dir in cmd and "experiments.train" in cmd and not zombie:
            pids.append(int(pid))
    return pids


@pytest.mark.slow
def test_failure_is_recorded_and_killed_sweep_resumes(config_file, tmp_path, cache_dir):
    d = str(tmp_path / "four")
    # seed=0 and seed=1 train as one vmapped subprocess, hidden=12 alone, broken alone
    args = [
        f"--config={config_file}",
        "--sweep=four",
        f"--workdir={d}",
        "--parallel=2",
        "--wandb=disabled",
        "--vmap_seeds=true",
    ]
    env = dict(os.environ, RNNBENCH_CACHE=cache_dir, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    names = ["seed=0", "seed=1", "hidden=12", "batch_size=64,hidden=8"]
    finals = [os.path.join(d, n, "final.json") for n in names]
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not any(map(os.path.exists, finals)):
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    assert _children_of(d) == [], "runs outlived the killed sweep runner"
    before = {f: os.stat(f).st_mtime_ns for f in finals if os.path.exists(f)}
    assert before
    assert _sweep_json(d)["counts"]["running"] >= 1  # what the kill left behind

    r = _cli(args, cache_dir)  # the same command again
    assert r.returncode == 1, r.stderr[-3000:]
    assert "3/4 done, 1 failed" in r.stderr and "error.txt" in r.stderr
    state = _sweep_json(d)
    assert state["counts"] == {"done": 3, "failed": 1, "pending": 0, "running": 0}
    assert (state["runner"]["parallel"], state["runner"]["vmap_seeds"]) == (2, True)
    for seed in (0, 1):  # the two seeds trained as one program, as the runner recorded
        with open(os.path.join(d, f"seed={seed}", "final.json")) as f:
            assert json.load(f)["models_in_program"] == 2
    by_name = {x["name"]: x for x in state["runs"]}
    assert by_name["batch_size=64,hidden=8"]["state"] == "failed"
    assert "config.batch_size=64 must be in [1, 48]" in by_name["batch_size=64,hidden=8"]["error"]
    assert by_name["batch_size=64,hidden=8"]["overrides"] == {"batch_size": 64, "model.hidden": 8}
    err = open(os.path.join(d, "batch_size=64,hidden=8", "error.txt")).read()
    # the run's own error output (here the train CLI's one-line data error) and its command
    assert "error: config.batch_size=64 must be in [1, 48]" in err
    assert "--config.batch_size=64" in err
    assert "'--workdir=\"" in err  # the command, quoted for a shell
    for f in finals[:3]:
        assert os.path.exists(f)
    for f, mtime in before.items():  # finished before the kill: not retrained
        assert os.stat(f).st_mtime_ns == mtime
        log = open(by_name[os.path.basename(os.path.dirname(f))]["log"]).read()
        assert log.count("\n=== ") == 1  # started once
    cfg = json.load(open(os.path.join(d, "hidden=12", "config.json")))
    assert cfg["model"]["hidden"] == 12 and cfg["wandb"]["group"] == "tiny-four"
    for seed in (0, 1):  # the seed group wrote what separate runs write
        assert json.load(open(os.path.join(d, f"seed={seed}", "config.json")))["seed"] == seed
    assert sorted(os.listdir(os.path.join(d, "logs"))) == [
        "batch_size=64,hidden=8.log",
        "default,seeds=0-1.log",
        "hidden=12.log",
    ]

    r = _cli(args, cache_dir)  # a third time: only the failed run is retried
    assert r.returncode == 1 and "3/4 done, 1 failed" in r.stderr
    for f, mtime in before.items():
        assert os.stat(f).st_mtime_ns == mtime


@pytest.mark.slow
def test_submitit_local_backend(config_file, tmp_path, cache_dir):
    pytest.importorskip("submitit", reason="submitit (optional extra) is not installed")
    d = str(tmp_path / "sub")
    r = _cli(
        [
            f"--config={config_file}",
            "--sweep=two",
            f"--workdir={d}",
            "--backend=submitit",
            "--submitit_cluster=local",
            "--parallel=2",
            "--wandb=disabled",
            "--quiet",
        ],
        cache_dir,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert _sweep_json(d)["counts"]["done"] == 2
    for name in ("hidden=8", "hidden=12"):
        assert os.path.exists(os.path.join(d, name, "final.json"))
