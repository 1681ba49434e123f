"""Each view of ``meshcache top`` at 80x24 and 160x48, from the recorded cluster, as SVG.

The screenshots (``app.export_screenshot()``) are compared with the files in
``tests/tui/snapshots/``. After a deliberate change of the screen, regenerate them and look at
them before committing::

    MESHCACHE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/tui/test_snapshots.py

The same run writes ``docs/top.svg`` (the README's picture) from the Cluster view at 120x32.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshcache.tui.app import TopApp
from meshcache.tui.source import RecordedSource
from tests.tui.helpers import run, screen_text, wait_true
from tests.tui.recording import NODES, POLLS, recorded_polls

SNAPSHOTS = Path(__file__).parent / "snapshots"
DOCS_SVG = Path(__file__).parents[2] / "docs" / "top.svg"
UPDATE = os.environ.get("MESHCACHE_UPDATE_SNAPSHOTS") == "1"
VIEWS = ["cluster", "ring", "namespaces", "events", "hotkeys"]
SIZES = [(80, 24), (160, 48)]


async def screenshot(view: int, size: tuple[int, int]) -> tuple[str, str]:
    """The SVG and the plain text of view ``view`` (1-based) after the whole recording."""
    source = RecordedSource(recorded_polls(), entry=NODES[0])
    app = TopApp(source, refresh=1.0, utc=True)
    async with app.run_test(size=size) as pilot:
        await wait_true(
            lambda: app.snapshot is not None and app.snapshot.polls == POLLS, 30, "the replay"
        )
        await pilot.press(str(view))
        # Settled: two screenshots in a row agree (scrolls wait for a layout pass).
        svg = ""
        for _ in range(50):
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            again = app.export_screenshot(title="meshcache top")
            if again == svg:
                break
            svg = again
        return svg, screen_text(app)


def check(svg: str, path: Path, text: str) -> None:
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} is missing; run with MESHCACHE_UPDATE_SNAPSHOTS=1 to write it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        return
    if path.read_text(encoding="utf-8") != svg:
        pytest.fail(
            f"the screen differs from {path.name} (if the change is meant, regenerate with "
            f"MESHCACHE_UPDATE_SNAPSHOTS=1). The screen now:\n{text}"
        )


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("view", VIEWS)
def test_view_snapshot(view: str, size: tuple[int, int]) -> None:
    svg, text = run(screenshot(VIEWS.index(view) + 1, size))
    check(svg, SNAPSHOTS / f"{view}-{size[0]}x{size[1]}.svg", text)


def test_readme_screenshot() -> None:
    """docs/top.svg is the Cluster view of the recording at 120x32."""
    svg, text = run(screenshot(1, (120, 32)))
    check(svg, DOCS_SVG, text)


def test_screenshots_are_deterministic() -> None:
    """Two replays of the recording give the same picture (no clock, no randomness)."""
    first, _ = run(screenshot(4, (80, 24)))
    second, _ = run(screenshot(4, (80, 24)))
    assert first == second
