"""rnnbench.checkpoint_files: the manifest finds each kind of damage and names the file."""

import os

import pytest

from rnnbench import checkpoint_files


@pytest.fixture
def step_dir(tmp_path):
    d = tmp_path / "24"
    (d / "default" / "d").mkdir(parents=True)
    (d / "_CHECKPOINT_METADATA").write_text('{"step": 24}')
    (d / "default" / "_METADATA").write_text('{"tree": 1}')
    (d / "default" / "d" / "abc").write_bytes(bytes(range(256)) * 8)
    checkpoint_files.write_manifest(str(d))
    return d


def test_intact_checkpoint_has_no_damage(step_dir):
    assert checkpoint_files.damage(str(step_dir)) is None


def test_truncated_file_is_named_with_both_sizes(step_dir):
    with open(step_dir / "default" / "d" / "abc", "r+b") as f:
        f.truncate(10)
    assert checkpoint_files.damage(str(step_dir)) == (
        "default/d/abc has 10 bytes, 2048 when it was written"
    )


def test_overwritten_file_of_the_same_size(step_dir):
    p = step_dir / "default" / "d" / "abc"
    data = bytearray(p.read_bytes())
    data[1000] ^= 0xFF
    p.write_bytes(bytes(data))
    assert "default/d/abc has other contents" in checkpoint_files.damage(str(step_dir))


def test_deleted_item_directory(step_dir):
    import shutil

    shutil.rmtree(step_dir / "default")
    assert checkpoint_files.damage(str(step_dir)) == "default/_METADATA is missing"


def test_unreadable_manifest_and_no_manifest(step_dir, tmp_path):
    (step_dir / checkpoint_files.MANIFEST).write_text("{trunc")
    assert "manifest" in checkpoint_files.damage(str(step_dir))
    os.remove(step_dir / checkpoint_files.MANIFEST)
    assert checkpoint_files.damage(str(step_dir)) is None  # orbax judges it, as before
