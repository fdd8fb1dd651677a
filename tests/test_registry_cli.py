import subprocess
import sys

import pytest
import torch

from benchmark.cli import main
from benchmark.zoo import resolve_model
from models import MODELS, TINY_VARIANT, build_model


def test_registry_builds_every_tiny_variant_with_the_contract():
    for name in TINY_VARIANT.values():
        m = build_model(name).eval()
        s = m.input_size
        out = m(torch.rand(2, 3, s, s), torch.rand(2, 1, s, s))
        assert out.shape == (2, 1, s, s)
        p = m.postprocess(out, (40, 30))
        assert p.shape == (2, 1, 40, 30) and 0 <= p.min() and p.max() <= 1
    assert set(TINY_VARIANT) | set(TINY_VARIANT.values()) <= set(MODELS)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model 'nosuch'"):
        build_model("nosuch")
    with pytest.raises(KeyError, match=r"unknown model 'nosuch'; registered: \[.*'jldcf-tiny'"):
        resolve_model("nosuch")  # without a checkpoint: not "needs a checkpoint"


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        resolve_model("jldcf-tiny", str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        resolve_model("jldcf-tiny", str(garbage))
    wrong = tmp_path / "wrong.pth"
    torch.save(build_model("bbsnet-tiny").state_dict(), wrong)
    with pytest.raises(RuntimeError, match=r"(?s)wrong\.pth: does not match JLDCF.*Missing key"):
        resolve_model("jldcf-tiny", str(wrong))


def test_cli_list_and_help(capsys):
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    assert "pgd" in out and "art-square" in out
    r = subprocess.run([sys.executable, "-m", "benchmark", "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--ckpt" in r.stdout


def test_cli_reports_bad_input_without_traceback(capsys, tmp_path):
    assert main(["run", "--model", "jldcf-tiny", "--suite", str(tmp_path / "none.yaml")]) == 2
    assert "suite not found" in capsys.readouterr().err


def test_a_checkpoint_folder_is_labelled_by_a_hash_of_its_files(tmp_path):
    from benchmark.zoo import checkpoint_sha256

    for name in ("RgbNet.pth", "RgbdNet.pth"):
        (tmp_path / name).write_bytes(name.encode())
    sha = checkpoint_sha256(tmp_path)
    assert len(sha) == 64 and int(sha, 16) >= 0  # hex, no "folder:" prefix in the 8 characters of a label
    (tmp_path / "RgbNet.pth").write_bytes(b"other weights")
    assert checkpoint_sha256(tmp_path) != sha
