"""Empty and cut-short model files and checkpoints are named so, in words."""

from __future__ import annotations

import jax
import pytest

import diffprims as dp

KEY = jax.random.key(0)
TARGET = jax.random.uniform(jax.random.key(1), (6, 6, 3))


def _resume(path):
    model = dp.Circles.init(3, key=KEY, target=TARGET)
    return dp.fit(model, TARGET, steps=4, steps_per_dispatch=4, key=KEY, batch=8, resume=path)


def test_an_empty_checkpoint_is_called_empty(tmp_path):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(b"")
    with pytest.raises(dp.CheckpointError, match=r"is empty \(0 bytes\)") as info:
        _resume(path)
    assert "b''" not in str(info.value)


def test_a_checkpoint_cut_in_its_header_is_called_truncated(tmp_path):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(b'{"format": "diffprims-checkpoint", "ve')
    with pytest.raises(dp.CheckpointError, match=r"truncated.*header line does not end") as info:
        _resume(path)
    assert "b''" not in str(info.value) and "38 bytes" in str(info.value)


def test_a_checkpoint_of_another_kind_shows_its_first_bytes(tmp_path):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(b"hello\nworld\n")
    with pytest.raises(dp.CheckpointError, match=r"not a diffprims checkpoint.*b'hello\\n'"):
        _resume(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.eqx"
    return dp.save(path, dp.Circles.init(2, key=KEY)).read_bytes()


def test_an_empty_model_file_is_called_empty(tmp_path):
    (tmp_path / "m.eqx").write_bytes(b"")
    with pytest.raises(dp.LoadError, match=r"it is empty \(0 bytes\)"):
        dp.load(tmp_path / "m.eqx")


@pytest.mark.parametrize("cut", [5, 16, 40])
def test_a_model_file_cut_in_its_first_lines_is_called_truncated(tmp_path, saved, cut):
    (tmp_path / "m.eqx").write_bytes(saved[:cut])
    expected = rf"truncated or damaged \(the file ends after {cut} bytes"
    with pytest.raises(dp.LoadError, match=expected):
        dp.load(tmp_path / "m.eqx")
