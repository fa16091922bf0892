"""``python -m rnnbench.data describe``: text and JSON output on every loader family."""

import json
import os
import subprocess
import sys

import pytest
from test_data_speech_commands import make_speech_commands

from rnnbench.data import load
from rnnbench.data.__main__ import describe, main

FSDD = os.environ.get("RNNBENCH_FSDD_DIR")


def test_describe_synth_commands_json(tmp_path, capsys):
    args = [
        "describe",
        "synth_commands",
        "--cache_dir",
        str(tmp_path),
        "--train_size",
        "24",
        "--validation_size",
        "12",
        "--test_size",
        "12",
        "--json",
        "--output",
        str(tmp_path / "o.json"),
    ]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == json.loads((tmp_path / "o.json").read_text())
    ds = load("synth_commands", cache_dir=tmp_path, train_size=24, validation_size=12, test_size=12)
    for s, sp in ds.splits.items():
        d = info["splits"][s]
        assert d["examples"] == len(sp.audio)
        assert d["per_class"] == {c: int((sp.labels == i).sum()) for i, c in enumerate(ds.classes)}
        assert d["duration_s"] == pytest.approx(sum(len(a) for a in sp.audio) / 16000, abs=0.01)


def test_describe_synth_digits_counts_words(tmp_path):
    ds = load("synth_digits", cache_dir=tmp_path, train_size=6, validation_size=3, test_size=3)
    info = describe(ds)
    for s, sp in ds.splits.items():
        assert sum(info["splits"][s]["per_class"].values()) == sum(
            len(t.split()) for t in sp.transcripts
        )


def test_describe_speech_commands_subprocess(tmp_path):
    root = make_speech_commands(tmp_path / "sc")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnbench.data",
            "describe",
            "speech_commands",
            f"--data_dir={root}",
            "--protocol=35",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "speech_commands (classify, 7 classes)" in out.stdout
    assert "train: 28 examples" in out.stdout and "marvin: 4" in out.stdout


def test_describe_errors(tmp_path, capsys):
    assert main(["describe", "speech_commands", f"--data_dir={tmp_path}"]) == 2
    assert "validation_list.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["describe", "librispeech"])


def test_tfds_missing_gives_install_hint():
    pytest.importorskip("rnnbench.data.tfds")
    try:
        import tensorflow_datasets  # noqa: F401

        pytest.skip("tensorflow_datasets is installed; the missing-package path cannot be tested")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"pip install 'rnnbench\[tfds\]'"):
        load("tfds:speech_commands")
    assert main(["describe", "tfds:speech_commands"]) == 2  # the CLI says it in one line


@pytest.mark.skipif(
    not FSDD or not os.path.isdir(FSDD), reason="set RNNBENCH_FSDD_DIR to an FSDD copy"
)
def test_describe_fsdd_real(capsys):
    assert main(["describe", "fsdd", f"--data_dir={FSDD}", "--split=speakers", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    total = sum(d["examples"] for d in info["splits"].values())
    n_files = len([f for f in os.listdir(os.path.join(FSDD, "recordings")) if f.endswith(".wav")])
    assert total == n_files and info["splits"]["test"]["speakers"] == 1
    assert sum(info["splits"]["test"]["per_class"].values()) == info["splits"]["test"]["examples"]
