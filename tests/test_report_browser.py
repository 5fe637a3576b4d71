"""The HTML report in a real browser (headless Chromium): at 1400 px the whole headline table
fits, without horizontal scrolling, measured from the DOM."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_report import synthetic_lines, write_jsonl

from payattn.report import report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
# Appended to a copy of the report: the widths the browser laid out, written into the DOM.
MEASURE = """<script>
const box = document.querySelector("div.scroll"), table = box.querySelector("table");
document.body.setAttribute("data-measured", JSON.stringify({
  box_client: box.clientWidth, box_scroll: box.scrollWidth, table: table.getBoundingClientRect().width,
  page_client: document.documentElement.clientWidth, page_scroll: document.documentElement.scrollWidth,
  viewport: window.innerWidth}));
</script></body>"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found: run scripts/ci_system_deps.sh (installs Debian's chromium)")
    return path


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("width", [1400, 1920])
def test_headline_table_fits_without_horizontal_scrolling(tmp_path: Path, width: int) -> None:
    paths = report(write_jsonl(tmp_path / "results.jsonl", synthetic_lines()), tmp_path / "out")
    page = tmp_path / "measured.html"
    page.write_text(paths.html.read_text(encoding="utf-8").replace("</body>", MEASURE, 1), encoding="utf-8")
    done = browse(page, tmp_path / f"profile-{width}", f"--window-size={width},1000", "--dump-dom")
    found = re.search(r'data-measured="([^"]+)"', done.stdout)
    assert found, done.stderr[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"'))
    assert measured["viewport"] == width
    assert measured["box_scroll"] <= measured["box_client"], measured  # the headline is whole
    assert measured["page_scroll"] <= measured["page_client"], measured
    assert measured["table"] > 0.5 * width  # laid out as a table, not collapsed

    shot = tmp_path / f"report-{width}.png"
    done = browse(paths.html, tmp_path / f"profile-shot-{width}", f"--window-size={width},1000",
                  f"--screenshot={shot}")
    assert shot.is_file(), done.stderr[-2000:]
    assert Image.open(shot).size == (width, 1000)
