"""The explorer site (``video-index show OUT --html DIR``) in a real headless browser.

Debian's ``chromium`` driven by Playwright (its own browser download cannot work on
these machines: ``executable_path`` points at the system one). ``.ci/run`` installs
it; where it is missing the browser tests skip, saying why. The index is made by a small colour
model of the test's own whose spec names an embedding output, over VP9 videos (which
every Chromium build plays) plus a file that fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli
from tests.media import write_video

LONG_NAME = "blue_clip_recorded_at_the_harbour_on_the_second_morning"
SCREENSHOT = os.environ.get("VIDEO_INDEX_SCREENSHOT")  # also save the screenshot here


def _chromium() -> str:
    # A test installs nothing: .ci/run installs Debian's chromium before the suite.
    return shutil.which("chromium") or pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
    )


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--allow-file-access-from-files"]
        )
        yield browser
        browser.close()


def _solid(colour, seconds: float, fps: int = 10, size=(64, 48)) -> list[np.ndarray]:
    frame = np.empty((size[1], size[0], 3), np.uint8)
    frame[:] = colour
    return [frame] * int(seconds * fps)


@pytest.fixture(scope="module")
def site(tmp_path_factory, colour_embedding_spec_file) -> tuple[Path, Path]:
    archive = tmp_path_factory.mktemp("archive")
    vp9 = ("libvpx-vp9", "yuv420p", {"crf": "30", "b": "0"})
    write_video(archive / "red.webm", _solid((220, 20, 20), 3.2), 10, *vp9)
    write_video(
        archive / "green_then_blue.webm",
        _solid((20, 200, 20), 2.4) + _solid((20, 20, 220), 2.4),
        10,
        *vp9,
    )
    # A long name without spaces: its nearest-clip links must wrap inside the cards.
    write_video(archive / f"{LONG_NAME}.webm", _solid((30, 30, 200), 2.4), 10, *vp9)
    (archive / "broken.webm").write_bytes(b"not a video")
    out = tmp_path_factory.mktemp("index") / "out"
    done = run_cli(
        "index", "--input", str(archive), "--output", str(out),
        "--model", str(colour_embedding_spec_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    site_dir = out.parent / "site"
    shown = run_cli("show", str(out), "--html", str(site_dir))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "explorer:" in shown.stdout
    return out, site_dir


def test_a_gif_gets_an_img_player_and_a_video_a_video_player() -> None:
    from beam_pipeline.explorer import player_html

    assert player_html("/a/clip.GIF").startswith("<img class=player src='file:///a/clip.GIF'")
    assert player_html("/a/clip.mp4").startswith("<video controls")
    avi = player_html("/a/clip.avi")
    assert "<video" not in avi and "browsers do not play .avi" in avi


def test_site_pages_are_self_contained(site) -> None:
    _, site_dir = site
    for page in site_dir.rglob("*.html"):
        text = page.read_text()
        # No network: no remote script, style, image or font.
        assert "http://" not in text and "https://" not in text, page
    index = (site_dir / "index.html").read_text()
    assert "3 videos" in index and "1 failure." in index and "(1 page)" in index
    failures = (site_dir / "failures" / "00001.html").read_text()
    assert "broken.webm" in failures and "decode" in failures
    page = (site_dir / "videos" / "00001.html").read_text()
    # Nearest clips from other videos: the blue clips of green_then_blue find the blue one.
    assert "like:" in page and f"{LONG_NAME}.webm @" in page


def _console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_explorer_in_a_real_browser(site, browser, tmp_path) -> None:
    out, site_dir = site
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = _console_errors(page)

    page.goto((site_dir / "index.html").as_uri())
    rows = page.locator("#histogram tr[data-labels]")
    assert rows.count() == 3
    page.fill("#search", "gre")
    assert page.locator("#histogram tr[data-labels]:visible").count() == 1

    page.goto((site_dir / "videos" / "00001.html").as_uri())
    page.wait_for_load_state("load")
    images = page.locator("li.clip img")
    assert images.count() >= 12  # one thumbnail per clip
    widths = page.eval_on_selector_all("li.clip img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(width > 0 for width in widths), widths

    # The search box filters clips and videos by label.
    all_clips = page.locator("li.clip").count()
    page.fill("#search", "blue")
    visible = page.locator("li.clip:visible")
    assert 0 < visible.count() < all_clips
    for i in range(visible.count()):
        assert "blue" in visible.nth(i).get_attribute("data-labels").split(" | ")
    assert page.locator("section.video:visible").count() == 2  # red.webm hidden
    page.fill("#search", "")

    # A click on a clip seeks that video's player to the clip's start.
    section = page.locator("section.video", has=page.locator("h2", has_text="green_then_blue"))
    clip = section.locator("li.clip").nth(3)
    start = float(clip.get_attribute("data-start"))
    assert start > 0
    clip.click(position={"x": 80, "y": 20})
    page.wait_for_function(
        "([s, t]) => Math.abs(document.querySelector(s).currentTime - t) < 0.05",
        arg=[f"section[data-video='{section.get_attribute('data-video')}'] video", start],
    )
    ready = section.locator("video").evaluate("v => v.readyState")
    assert ready >= 1  # the browser loaded the file's metadata: it can play it

    # No clip card's text runs out of it (long names and nearest-clip links wrap).
    overflowing = page.eval_on_selector_all(
        "li.clip", "cards => cards.filter(c => c.scrollWidth > c.clientWidth).length"
    )
    assert overflowing == 0

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1100, "height": 640})
    assert shot.stat().st_size > 1000
    if SCREENSHOT:
        shutil.copy(shot, SCREENSHOT)
    assert errors == [], errors
    page.close()


def test_every_kind_of_page_loads_without_a_console_error(site, browser) -> None:
    _, site_dir = site
    pages = [site_dir / "index.html", *sorted(site_dir.glob("*/*.html"))]
    kinds = {p.parent.name for p in pages[1:]}
    assert kinds == {"videos", "labels", "failures"}, kinds
    for path in pages:
        page = browser.new_page()
        errors = _console_errors(page)
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        assert errors == [], (path, errors)
        page.close()


def test_shot_strip_shows_each_shot_and_seeks_the_player(site, browser, tmp_path) -> None:
    _, site_dir = site
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = _console_errors(page)
    page.goto((site_dir / "videos" / "00001.html").as_uri())
    page.wait_for_load_state("load")
    # green_then_blue cuts from green to blue at 2.4 s: two shots; the others have one.
    section = page.locator("section.video", has=page.locator("h2", has_text="green_then_blue"))
    shots = section.locator("ol.shots li.shot")
    assert shots.count() == 2
    assert [shots.nth(i).get_attribute("data-kind") for i in range(2)] == ["start", "cut"]
    assert "2.4" in shots.nth(1).inner_text() and "cut" in shots.nth(1).inner_text()
    widths = section.locator("li.shot img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(width > 0 for width in widths), widths
    assert page.locator("ol.shots li.shot").count() == 4
    # A click on a shot seeks that video's player to the shot's start.
    start = float(shots.nth(1).get_attribute("data-start"))
    assert start == pytest.approx(2.4, abs=0.11)
    shots.nth(1).click()
    page.wait_for_function(
        "([s, t]) => Math.abs(document.querySelector(s).currentTime - t) < 0.05",
        arg=[f"section[data-video='{section.get_attribute('data-video')}'] video", start],
    )
    # Filtering clips by label leaves the shot strip of a shown video alone.
    page.fill("#search", "blue")
    assert shots.nth(0).is_visible()
    page.fill("#search", "")
    section.screenshot(path=str(tmp_path / "shots.png"))
    if SCREENSHOT:
        shutil.copy(tmp_path / "shots.png", Path(SCREENSHOT).with_suffix(".shots.png"))
    assert errors == [], errors
    page.close()
