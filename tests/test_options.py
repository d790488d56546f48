"""Settings: A1111 keys and defaults, validation, callbacks, config.json."""

import json
import logging
import sys
import threading

import pytest

from modules.options import OptionInfo, Options, options_section


def test_a1111_keys_have_the_expected_defaults():
    opts = Options()
    assert opts.sd_model_checkpoint is None
    assert opts.sd_vae == "Automatic"
    assert opts.CLIP_stop_at_last_layers == 1
    assert opts.show_progress_every_n_steps == 1
    assert opts.show_progress_type == "Approx cheap"
    assert opts.live_previews_enable is True
    assert opts.samples_save is True
    assert opts.samples_format == "png"
    assert opts.outdir_txt2img_samples == "outputs/txt2img-images"
    assert opts.outdir_samples == ""
    assert opts.save_to_dirs is True
    assert opts.directories_filename_pattern == "[date]"
    assert opts.samples_filename_pattern == ""
    assert opts.precision == "fp32"
    assert opts.emphasis == "Original"
    assert opts.enable_pnginfo is True
    assert opts.eta_noise_seed_delta == 0
    assert opts.randn_source == "GPU"
    assert opts.data["samples_format"] == "png"  # data holds every value, as A1111's does


def test_every_builtin_setting_has_a_label_and_a_section():
    for key, info in Options().data_labels.items():
        assert info.label, key
        assert info.section and len(info.section) == 2, key


def test_set_stores_and_reports_change():
    opts = Options()
    assert opts.set("CLIP_stop_at_last_layers", 2) is True
    assert opts.CLIP_stop_at_last_layers == 2
    assert opts.set("CLIP_stop_at_last_layers", 2) is False
    opts.samples_format = "jpg"  # attribute assignment validates too
    assert opts.data["samples_format"] == "jpg"


@pytest.mark.parametrize("key, value, words", [
    ("samples_save", "yes", "true or false"),
    ("CLIP_stop_at_last_layers", "2", "whole number"),
    ("CLIP_stop_at_last_layers", 13, "between 1 and 12"),
    ("samples_format", "bmp", "'png'"),
    ("show_progress_type", "Approx NN", "one of"),
    ("outdir_samples", 5, "text"),
])
def test_bad_values_raise_value_error_naming_the_key_and_keep_the_old_value(key, value, words):
    opts = Options()
    before = getattr(opts, key)
    with pytest.raises(ValueError) as error:
        opts.set(key, value)
    assert repr(key) in str(error.value)
    assert words in str(error.value)
    assert getattr(opts, key) == before


def test_unknown_key_is_an_error_and_whole_floats_are_accepted_for_ints():
    opts = Options()
    with pytest.raises(ValueError, match="'no_such_setting'"):
        opts.set("no_such_setting", 1)
    with pytest.raises(AttributeError):
        _ = opts.no_such_setting
    opts.set("eta_noise_seed_delta", 31337.0)  # JSON clients send numbers as floats
    assert opts.eta_noise_seed_delta == 31337 and isinstance(opts.eta_noise_seed_delta, int)


def test_onchange_runs_on_change_only_and_a_failing_callback_restores_the_value():
    opts = Options()
    calls = []
    opts.onchange("sd_vae", lambda: calls.append(opts.sd_vae), call=False)
    opts.set("sd_vae", "None")
    opts.set("sd_vae", "None")
    assert calls == ["None"]

    def refuse():
        raise RuntimeError("VAE file is broken")
    opts.onchange("sd_vae", refuse, call=False)
    with pytest.raises(RuntimeError, match="broken"):
        opts.set("sd_vae", "x.safetensors")
    assert opts.sd_vae == "None"


def test_extension_option_added_with_a1111_signature_and_chainable_decorations():
    opts = Options()
    info = OptionInfo(5, "Frames", component_args={"minimum": 1, "maximum": 10},
                      section=("my-ext", "My extension")).info("how many").needs_restart()
    assert isinstance(info, OptionInfo) and info.requires_restart
    opts.add_option("my_ext_frames", info)
    assert opts.my_ext_frames == 5
    opts.set("my_ext_frames", 7)
    with pytest.raises(ValueError, match="my_ext_frames"):
        opts.set("my_ext_frames", 11)
    section = options_section(("s", "S"), {"a": OptionInfo(1, "A"), "b": OptionInfo(2, "B")})
    assert {i.section for i in section.values()} == {("s", "S")}


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "config.json"
    opts = Options()
    opts.set("samples_format", "webp")
    opts.set("CLIP_stop_at_last_layers", 2)
    opts.save(path)
    assert json.loads(path.read_text())["samples_format"] == "webp"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left

    fresh = Options()
    fresh.load(path)
    assert fresh.samples_format == "webp"
    assert fresh.CLIP_stop_at_last_layers == 2


def test_load_warns_about_unknown_keys_and_keeps_them_for_a_later_extension(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"samples_format": "jpg", "my_ext_frames": 7}))
    opts = Options()
    with caplog.at_level(logging.WARNING):
        opts.load(path)
    assert "my_ext_frames" in caplog.text
    assert "my_ext_frames" not in opts.data
    assert opts.samples_format == "jpg"

    opts.save(path)  # saving before the extension registers must not lose its value
    assert json.loads(path.read_text())["my_ext_frames"] == 7
    opts.add_option("my_ext_frames", OptionInfo(1, "Frames"))
    assert opts.my_ext_frames == 7


def test_load_replaces_a_wrongly_typed_value_with_the_default(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"samples_save": "no", "samples_format": "jpg"}))
    opts = Options()
    with caplog.at_level(logging.WARNING):
        opts.load(path)
    assert opts.samples_save is True
    assert opts.samples_format == "jpg"
    assert "samples_save" in caplog.text


@pytest.mark.parametrize("content", ['{"samples_format": "jpg", ', "[1, 2]", ""])
def test_corrupt_file_gives_defaults_and_keeps_a_backup(tmp_path, caplog, content):
    path = tmp_path / "config.json"
    path.write_text(content)
    opts = Options()
    opts.set("samples_format", "webp")
    with caplog.at_level(logging.ERROR):
        opts.load(path)
    assert opts.samples_format == "png"
    backups = list(tmp_path.glob("config.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == content
    assert "config.json" in caplog.text
    opts.save(path)  # and the app can write a good file again
    assert json.loads(path.read_text())["samples_format"] == "png"


def test_missing_file_means_defaults(tmp_path):
    opts = Options()
    opts.load(tmp_path / "absent.json")
    assert opts.samples_format == "png"


def test_saving_while_another_thread_registers_and_sets_options_never_fails(tmp_path):
    opts = Options()
    path = tmp_path / "config.json"
    errors, done = [], threading.Event()

    def register():
        try:
            for i in range(2000):
                opts.add_option(f"ext_{i}", OptionInfo(i, f"Option {i}"))
                opts.set(f"ext_{i}", i + 1)
        except Exception as e:  # collected so the assertion below reports it
            errors.append(e)
        finally:
            done.set()

    def save():
        try:
            while not done.is_set():
                opts.save(path)
        except Exception as e:
            errors.append(e)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unlocked read of data is caught
    try:
        threads = [threading.Thread(target=register), threading.Thread(target=save)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    opts.save(path)
    assert json.loads(path.read_text())["ext_1999"] == 2000
