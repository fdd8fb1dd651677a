"""`make report` (benchmark/report.py): a self-contained page built from a real run, opened in headless
Chromium (Debian's package; `make browser` installs it): tables and images render and sorting works."""
import os
import re
import shutil

import pytest

from benchmark.report import build
from benchmark.runner import RunConfig, run

SUITE = """
dataset: synthetic
batch_size: 4
seed: 0
limit: 4
cells:
  - {attack: none}
  - {attack: fgsm, eps: 8/255, modality: [rgb, rgbd]}
  - {attack: pgd, eps: 8/255, modality: rgbd, steps: 20}
"""


@pytest.fixture(scope="module")
def report(pinned_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    suite = tmp / "tiny.yaml"
    suite.write_text(SUITE)
    run(RunConfig(model="jldcf-tiny", ckpt=str(pinned_tiny), suite=str(suite), results_dir=tmp / "results",
                  leaderboard_dir=tmp / "leaderboards"))
    return build(tmp / "leaderboards", tmp / "results"), tmp


def test_report_is_self_contained_with_headline_tables_and_galleries(report):
    path, tmp = report
    assert path == tmp / "leaderboards" / "index.html"
    page = path.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched at view time
    assert 'id="saliency-summary"' in page and 'id="saliency-jldcf-tiny"' in page
    images = re.findall(r'<img src="data:image/(?:png|jpeg);base64,', page)
    # the run's robustness curves and one gallery per cell (4 cells)
    assert len(images) >= 1 + 4
    assert "pgd rgbd linf 8/255 steps 20" in page


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("google-chrome")  # Debian's; GitHub's runners have Chrome
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the report's browser test: `make browser`")
        pytest.skip("no chromium here: `make browser` installs Debian's")
    return path


def test_report_renders_and_sorts_in_headless_chromium(report):
    playwright = pytest.importorskip("playwright.sync_api")
    path, tmp = report
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(path.as_uri())
        assert page.locator("table.sortable").count() >= 2
        page.locator("details").evaluate_all("ds => ds.forEach(d => d.open = true)")
        loaded = page.locator("img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
        assert loaded and all(loaded)
        table = page.locator("#saliency-jldcf-tiny")
        headers = table.locator("th").all_text_contents()
        s = headers.index("S")

        def column() -> list[float]:
            return [float(t) for t in table.locator(f"tbody tr td:nth-child({s + 1})").all_text_contents()]

        table.locator("th").nth(s).click()
        assert column() == sorted(column()) and len(column()) == 4
        table.locator("th").nth(s).click()
        assert column() == sorted(column(), reverse=True)
        assert table.locator("th").nth(s).get_attribute("aria-sort") == "descending"
        shot = tmp / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
