"""X/Y/Z plot on the page: pick it in the Script dropdown, fill two axes, generate, see the labelled grid."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.browser_helpers import CHROMIUM, chromium_page, set_slider, tiny_sd1_app, wait_for_model_ready, watch_generation

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")

XYZ = "txt2img_x_y_z_plot"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with tiny_sd1_app(tmp_path_factory) as server:
        yield server


def _choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    # the open list belongs to this dropdown (another one's list may still be closing)
    page.locator(f"#{dropdown_id}").get_by_role("option", name=option, exact=True).click()
    page.locator(f"#{dropdown_id} input").blur()


def _type(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} :is(textarea, input)").first
    box.fill(text)
    box.blur()


def test_xyz_plot_from_the_script_dropdown_shows_a_grid(app):
    from PIL import Image

    with chromium_page() as page:
        page.goto(app.url)
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        wait_for_model_ready(page)
        page.locator("#txt2img_prompt textarea").fill("a red circle")
        for slider, value in (("txt2img_steps", 1), ("txt2img_width", 64), ("txt2img_height", 64)):
            set_slider(page, slider, value)

        _choose(page, "script_list", "X/Y/Z plot")
        page.wait_for_selector(f"#{XYZ}_x_type", state="visible", timeout=30_000)
        _choose(page, f"{XYZ}_x_type", "Seed")
        _type(page, f"{XYZ}_x_values", "1, 2, 3")
        _choose(page, f"{XYZ}_y_type", "Steps")
        _type(page, f"{XYZ}_y_values", "1-2")

        page.locator("#txt2img_generate").click()
        _, final = watch_generation(page)
        assert "Script: X/Y/Z plot" in final["info"], final["info"]
        assert "X Type: Seed" in final["info"] and "Y Type: Steps" in final["info"]
        # the grid only ("Include Sub Images" is off); the gallery shows it large and as a thumbnail
        assert len(set(final["gallery"])) == 1, final["gallery"]

        src = page.evaluate("(src) => new URL(src, location.href).href", final["gallery"][0])
        response = page.request.get(src)
        assert response.ok
        grid = Image.open(io.BytesIO(response.body()))
        assert grid.width > 3 * 64 and grid.height > 2 * 64     # 3 x 2 cells plus the legend
        assert "Fixed X Values: \"1, 2, 3\"" in grid.info.get("parameters", "")
