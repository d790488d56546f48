import os
import threading

import pytest
from PIL import Image

from modules import images

INFO = 'a "cat", sitting: on a mat\nüñí 猫 🐱\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, Seed: 42, Model: "x, y"'


def picture(mode="RGB"):
    return Image.new(mode, (16, 12), (200, 30, 30) if mode == "RGB" else (200, 30, 30, 128))


@pytest.mark.parametrize("extension", ["png", "jpg", "webp"])
def test_infotext_survives_save_and_read(tmp_path, extension):
    fullfn, txt = images.save_image(picture(), str(tmp_path), "", seed=42, prompt="a cat", extension=extension,
                                    info=INFO, save_to_dirs=False)
    assert txt is None
    assert fullfn.endswith(f".{extension}") and os.path.isfile(fullfn)
    with Image.open(fullfn) as im:
        assert images.read_infotext(im) == INFO
        assert im.size == (16, 12)
    assert images.read_infotext(fullfn) == INFO


def test_jpeg_of_rgba_image_is_saved(tmp_path):
    fullfn, _ = images.save_image(picture("RGBA"), str(tmp_path), "", 1, "p", extension="jpg", info="x",
                                  save_to_dirs=False)
    with Image.open(fullfn) as im:
        assert im.mode == "RGB"


def test_png_without_infotext_reads_none(tmp_path):
    path = tmp_path / "plain.png"
    picture().save(path)
    assert images.read_infotext(str(path)) is None


def test_png_bytes_carry_infotext():
    import io
    data = images.image_to_png_bytes(picture(), INFO)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert images.read_infotext(Image.open(io.BytesIO(data))) == INFO


def test_names_count_on_from_highest_number(tmp_path):
    (tmp_path / "00041-7-old.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    fullfn, _ = images.save_image(picture(), str(tmp_path), "", seed=1234, prompt="a red fox", info="i",
                                  save_to_dirs=False)
    assert os.path.basename(fullfn) == "00042-1234-a red fox.png"
    second, _ = images.save_image(picture(), str(tmp_path), "", seed=1235, prompt="a red fox", info="i",
                                  save_to_dirs=False)
    assert os.path.basename(second) == "00043-1235-a red fox.png"


def test_grid_and_short_names(tmp_path):
    fullfn, _ = images.save_image(picture(), str(tmp_path), "grid", seed=1, prompt="p", short_filename=True,
                                  grid=True, save_to_dirs=False)
    assert os.path.basename(fullfn) == "grid-0000.png"
    fullfn, _ = images.save_image(picture(), str(tmp_path), "", forced_filename="chosen", save_to_dirs=False)
    assert os.path.basename(fullfn) == "chosen.png"


def test_save_to_dirs_uses_date_folder(tmp_path):
    import datetime
    fullfn, _ = images.save_image(picture(), str(tmp_path), "", seed=1, prompt="p", save_to_dirs=True)
    assert os.path.basename(os.path.dirname(fullfn)) == datetime.date.today().strftime("%Y-%m-%d")
    assert os.path.basename(fullfn) == "00000-1.png"  # A1111: only the seed inside dated folders


@pytest.mark.parametrize("prompt", [
    "../../etc/passwd",
    "a\x00b\x01c\nd\te",
    "x" * 300,
    "CON",
    'what: <is> "this"? a|b*c\\d/e',
    "trailing dots...   ",
    "猫" * 200,
])
def test_nasty_prompts_give_safe_names_inside_the_folder(tmp_path, prompt):
    fullfn, _ = images.save_image(picture(), str(tmp_path), "", seed=5, prompt=prompt, info="i",
                                  save_to_dirs=False)
    name = os.path.basename(fullfn)
    assert os.path.dirname(os.path.abspath(fullfn)) == str(tmp_path)
    assert not any(c in name for c in '<>:"/\\|?*') and all(ord(c) >= 32 for c in name)
    assert len(name) <= 128 and len(name.encode()) <= 240
    assert name.endswith(".png") and not name[:-4].endswith((".", " "))
    assert os.path.isfile(fullfn)


def test_reserved_and_traversing_forced_names_are_defused(tmp_path):
    for forced in ["CON", "nul", "../escape", "..", "aux.txt"]:
        fullfn, _ = images.save_image(picture(), str(tmp_path), "", forced_filename=forced, save_to_dirs=False)
        name = os.path.basename(fullfn)
        assert os.path.dirname(os.path.abspath(fullfn)) == str(tmp_path)
        assert name.split(".")[0].upper() not in {"CON", "NUL", "AUX"}


def test_sanitize_filename_part():
    assert images.sanitize_filename_part("a b/c:d") == "a_b_c_d"
    assert images.sanitize_filename_part("a b", replace_spaces=False) == "a b"
    assert images.sanitize_filename_part("end. . ", replace_spaces=False) == "end"


def test_concurrent_saves_do_not_collide(tmp_path):
    results, errors = [], []

    def save(i):
        try:
            results.append(images.save_image(picture(), str(tmp_path), "", seed=i, prompt="same prompt",
                                             info=f"info {i}", save_to_dirs=False, short_filename=True)[0])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 12
    infos = {images.read_infotext(f) for f in results}
    assert infos == {f"info {i}" for i in range(12)}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_txt_written_when_setting_on(tmp_path, monkeypatch):
    real_opt = images._opt
    monkeypatch.setattr(images, "_opt", lambda name: True if name == "save_txt" else real_opt(name))
    fullfn, txt = images.save_image(picture(), str(tmp_path), "", seed=1, prompt="p", info=INFO, save_to_dirs=False)
    assert txt == os.path.splitext(fullfn)[0] + ".txt"
    assert open(txt, encoding="utf-8").read() == INFO


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        images.save_image(picture(), str(tmp_path), "", extension="bmp")
