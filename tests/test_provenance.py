"""Code provenance: what makes the tree dirty, and what does not."""
import subprocess

from benchmark import provenance


def test_git_state_ignores_leaderboards_and_hashes_untracked_symlinks(tmp_path, monkeypatch):
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "leaderboards" / "saliency.csv").write_text("a\n1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    assert provenance.git_state()["dirty"] is False
    (tmp_path / "leaderboards" / "saliency.csv").write_text("a\n2\n")  # what a run writes
    (tmp_path / "leaderboards" / "saliency-defenses.csv").write_text("a\n")
    assert provenance.git_state()["dirty"] is False
    (tmp_path / "shared").mkdir()
    (tmp_path / "venv").symlink_to(tmp_path / "shared")  # an untracked link to a folder
    linked = provenance.git_state()
    assert linked["dirty"] is True and len(linked["diff_sha256"]) == 64
    (tmp_path / "code.py").write_text("x = 2\n")
    changed = provenance.git_state()
    assert changed["dirty"] is True and changed["diff_sha256"] != linked["diff_sha256"]
