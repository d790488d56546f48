"""img2img Batch (modules/img2img_batch.py + the tab's batch_plan): a folder through img2img as one queue job."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import cmd_args, images, img2img_batch, jobs, processing
from modules.ui import img2img as img2img_tab

torch.set_num_threads(1)


def tab_values(**changes) -> tuple:
    """The img2img tab's fixed values (build_processing's arguments), as the page sends them."""
    values = dict(mode="batch", init_image=None, sketch=None, upload_image=None, upload_mask=None,
                  prompt="a tree", negative_prompt="", sampler_name="Euler", scheduler="Automatic", steps=2,
                  cfg_scale=7.0, width=64, height=64, batch_count=1, batch_size=1, seed=21, denoising_strength=0.9,
                  resize_mode=0, mask_blur=0, mask_mode=0, inpainting_fill=1, inpaint_area=0, padding=32,
                  sketch_color=None, inpaint_color_sketch=None, mask_alpha=0)
    values.update(changes)
    return tuple(values.values())


@pytest.fixture
def folders(tmp_path):
    source, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    source.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.jpg", "c.webp"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(source / name)
        mask = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(mask).rectangle((16, 16, 40, 40), fill=255)
        mask.save(masks / (name.split(".")[0] + ".png"))   # matched by file name stem
    (source / "notes.txt").write_text("not an image")
    return source, masks, out


def with_model(model, calls=None):
    def run_one(p):
        p.sd_model = model
        if calls is not None:
            calls.append(p)
        return processing.process_images(p)
    return run_one


def test_batch_job_processes_every_image_keeps_names_and_skips_other_files(sd1_model, folders):
    source, masks, out = folders
    plan = img2img_tab.batch_plan(tab_values(), None, str(source), str(out), str(masks))
    queue = jobs.JobQueue()
    seen_progress = []

    def run_one(p):
        seen_progress.append(jobs.current_state().textinfo)
        return with_model(sd1_model)(p)

    try:
        job = queue.submit(lambda _job: img2img_batch.run(plan, run_one, jobs.current_state()), label="batch")
        assert job.wait(600) and job.status == "done", job.error
    finally:
        queue.shutdown()
    result = job.result
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert seen_progress == ["Image 1/4: a.png", "Image 2/4: b.jpg", "Image 3/4: c.webp"]
    assert len(result.images) == 3 and any("notes.txt" in w and "not an image" in w for w in result.warnings)
    for name, source_name in (("a.png", "a.png"), ("b.png", "b.jpg")):
        saved = Image.open(out / name)
        text = images.read_infotext(saved)
        assert "Steps: 2" in text and "Denoising strength: 0.9" in text and "Mask blur" not in text
        # inpaint batch: pixels outside the mask are the input's own
        original = np.asarray(Image.open(source / source_name).convert("RGB"))
        keep = np.ones((64, 64), dtype=bool)
        keep[16:41, 16:41] = False
        assert np.array_equal(np.asarray(saved.convert("RGB"))[keep], original[keep])
        assert not np.array_equal(np.asarray(saved.convert("RGB"))[~keep], original[~keep])


def test_missing_mask_skips_that_image_with_a_note(sd1_model, folders):
    source, masks, out = folders
    (masks / "b.png").unlink()
    plan = img2img_tab.batch_plan(tab_values(), None, str(source), str(out), str(masks))
    result = img2img_batch.run(plan, with_model(sd1_model), jobs.JobState())
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert any("b.jpg" in w and "no mask" in w for w in result.warnings)


def test_interrupt_stops_between_images(sd1_model, folders):
    source, _, out = folders
    plan = img2img_tab.batch_plan(tab_values(), None, str(source), str(out), "")
    state = jobs.JobState()
    calls = []

    def run_one(p):
        processed = with_model(sd1_model, calls)(p)
        state.interrupt()                  # the user presses Interrupt while image 1 finishes
        return processed

    result = img2img_batch.run(plan, run_one, state)
    assert len(calls) == 1 and result.interrupted and len(result.images) == 1
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_several_images_per_input_are_numbered(sd1_model, folders):
    source, _, out = folders
    for name in ("b.jpg", "c.webp"):
        (source / name).unlink()
    plan = img2img_tab.batch_plan(tab_values(batch_size=2), None, str(source), str(out), "")
    result = img2img_batch.run(plan, with_model(sd1_model), jobs.JobState())
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a.png"] and len(result.images) == 2


def test_folder_errors_name_the_field(folders, tmp_path):
    source, masks, out = folders
    with pytest.raises(ValueError, match="Input directory: .* is not an existing folder"):
        img2img_tab.batch_plan(tab_values(), None, str(tmp_path / "nope"), str(out), "")
    with pytest.raises(ValueError, match="Input directory: enter the folder"):
        img2img_tab.batch_plan(tab_values(), None, "  ", str(out), "")
    with pytest.raises(ValueError, match="Inpaint batch mask directory: .* is not an existing folder"):
        img2img_tab.batch_plan(tab_values(), None, str(source), str(out), str(tmp_path / "nomask"))
    with pytest.raises(ValueError, match="Output directory: .* is a file"):
        img2img_tab.batch_plan(tab_values(), None, str(source), str(source / "notes.txt"), "")
    with pytest.raises(ValueError, match="must differ from the input directory"):
        img2img_tab.batch_plan(tab_values(), None, str(source), str(source), "")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        img2img_tab.batch_plan(tab_values(), None, str(empty), str(out), "")


def test_folder_of_non_images_fails_the_job_with_the_reason(sd1_model, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "readme.md").write_text("x")
    plan = img2img_tab.batch_plan(tab_values(), None, str(source), str(tmp_path / "out"), "")
    with pytest.raises(ValueError, match="readme.md \\(not an image\\)"):
        img2img_batch.run(plan, with_model(sd1_model), jobs.JobState())


@pytest.mark.parametrize("flags, allowed", [
    ([], True), (["--listen"], False), (["--share"], False), (["--server-name", "192.168.1.5"], False),
    (["--listen", "--enable-insecure-extension-access"], True),
])
def test_server_folders_are_refused_when_listening_beyond_loopback(folders, flags, allowed):
    source, _, out = folders
    opts = cmd_args.parse_args(flags, environ={})
    if allowed:
        img2img_batch.plan(str(source), str(out), "", lambda image, mask: None, opts)
    else:
        with pytest.raises(ValueError, match="--enable-insecure-extension-access"):
            img2img_batch.plan(str(source), str(out), "", lambda image, mask: None, opts)


def test_empty_output_directory_means_the_img2img_outputs_folder(folders, tmp_path, monkeypatch):
    import time
    from types import SimpleNamespace

    from modules import shared

    source, _, _ = folders
    monkeypatch.setattr(shared, "paths", SimpleNamespace(outputs_dir=tmp_path / "outputs"))
    plan = img2img_batch.plan(str(source), "", "", lambda image, mask: None)
    assert plan.output_dir == tmp_path / "outputs" / "img2img-images" / time.strftime("%Y-%m-%d")
    assert [f.name for f in plan.files] == ["a.png", "b.jpg", "c.webp", "notes.txt"]
