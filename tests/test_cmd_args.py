"""Command-line flags as A1111 users type them, and the folders they move."""

import subprocess
import sys
from pathlib import Path

import pytest

from modules import cmd_args, paths

REPO = Path(__file__).resolve().parent.parent
NO_ENV = {}  # keeps a developer's COMMANDLINE_ARGS out of these tests


def parse(*argv, environ=NO_ENV):
    return cmd_args.parse_args(list(argv), environ=environ)


def test_defaults_serve_the_page_on_loopback_7860():
    opts = parse()
    assert opts.port == 7860
    assert cmd_args.server_name(opts) == "127.0.0.1"
    assert not opts.api and not opts.nowebui and not opts.xformers
    assert opts.precision == "autocast"
    assert opts.use_cpu == []


def test_nowebui_moves_the_default_port_to_7861_but_not_an_explicit_one():
    assert parse("--nowebui").port == 7861
    assert parse("--nowebui", "--port", "9000").port == 9000


def test_common_a1111_command_line_is_accepted():
    opts = parse("--listen", "--api", "--xformers", "--medvram", "--no-half-vae",
                 "--precision", "full", "--ckpt", "models/x.safetensors", "--use-cpu", "all", "sd",
                 "--api-auth", "me:secret", "--theme", "dark", "--skip-torch-cuda-test",
                 "--no-download-sd-model", "--skip-prepare-environment", "--cors-allow-origins",
                 "http://localhost:3000", "--enable-insecure-extension-access")
    assert opts.listen and opts.api and opts.xformers and opts.medvram and opts.no_half_vae
    assert opts.precision == "full"
    assert opts.ckpt == "models/x.safetensors"
    assert opts.use_cpu == ["all", "sd"]
    assert opts.theme == "dark"
    assert cmd_args.server_name(opts) == "0.0.0.0"
    assert cmd_args.listens_beyond_loopback(opts)


def test_bf16_precision_is_accepted_and_unknown_precision_is_refused(capsys):
    assert parse("--precision", "bf16").precision == "bf16"
    with pytest.raises(SystemExit) as exit_info:
        parse("--precision", "fp16")
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_port_out_of_range_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit):
        parse("--port", "70000")
    assert "between 1 and 65535" in capsys.readouterr().err


def test_commandline_args_are_appended_with_shell_quoting():
    opts = parse("--api", environ={"COMMANDLINE_ARGS": '--port 7870 --ckpt "my model.safetensors"'})
    assert opts.api
    assert opts.port == 7870
    assert opts.ckpt == "my model.safetensors"


def test_commandline_args_come_after_argv_so_they_win_for_repeated_flags():
    assert parse("--port", "7000", environ={"COMMANDLINE_ARGS": "--port 7001"}).port == 7001


def test_unknown_flag_exits_2_suggesting_the_close_match_without_traceback():
    code = "import sys; from modules import cmd_args; cmd_args.parse_args(sys.argv[1:], environ={})"
    result = subprocess.run([sys.executable, "-c", code, "--lisen", "--api"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--lisen" in result.stderr
    assert "did you mean --listen?" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_flag_from_the_environment_is_reported_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(environ={"COMMANDLINE_ARGS": "--no-half-vea"})
    assert exit_info.value.code == 2
    assert "did you mean --no-half-vae" in capsys.readouterr().err


def test_extension_flags_added_before_parsing_are_accepted():
    parser = cmd_args.make_parser()
    early = cmd_args.parse_known_early(["--my-ext-flag", "3", "--data-dir", "/tmp/d"], parser, environ={})
    assert early.data_dir == "/tmp/d"  # readable before extensions are found
    parser.add_argument("--my-ext-flag", type=int, default=0)  # what an extension's preload(parser) does
    opts = cmd_args.parse_args(["--my-ext-flag", "3"], parser, environ={})
    assert opts.my_ext_flag == 3


def test_gradio_credentials_from_flag_and_file(tmp_path):
    auth_file = tmp_path / "auth.txt"
    auth_file.write_text("carol:c3\ndave:d:4\n")
    opts = parse("--gradio-auth", "alice:a1,bob:b2", "--gradio-auth-path", str(auth_file))
    assert cmd_args.gradio_credentials(opts) == [("alice", "a1"), ("bob", "b2"), ("carol", "c3"), ("dave", "d:4")]
    with pytest.raises(ValueError, match="'nobody'"):
        cmd_args.parse_credentials("alice:a1,nobody")


def test_default_paths_follow_the_a1111_layout_in_the_repository():
    p = paths.from_cmd_opts(parse())
    assert p.data_dir == REPO
    assert p.config_file == REPO / "config.json"
    assert p.sd_models_dir == REPO / "models" / "Stable-diffusion"
    assert p.vae_dir == REPO / "models" / "VAE"
    assert p.lora_dir == REPO / "models" / "Lora"
    assert REPO / "embeddings" in p.embeddings_dirs
    assert p.resolve("outputs/txt2img-images") == REPO / "outputs" / "txt2img-images"
    assert p.configs_dir == REPO / "configs"


def test_data_dir_moves_user_files_but_keeps_the_shipped_models_findable(tmp_path):
    p = paths.from_cmd_opts(parse("--data-dir", str(tmp_path), "--lora-dir", str(tmp_path / "L")))
    assert p.config_file == tmp_path / "config.json"
    assert p.cache_file == tmp_path / "cache.json"
    assert p.styles_file == tmp_path / "styles.csv"
    assert p.resolve("outputs/txt2img-images") == tmp_path / "outputs" / "txt2img-images"
    assert p.ckpt_dirs[0] == tmp_path / "models" / "Stable-diffusion"
    assert REPO / "models" / "Stable-diffusion" in p.ckpt_dirs  # the demo model ships there
    assert p.lora_dir == tmp_path / "L"
    assert p.vae_dir == tmp_path / "models" / "VAE"
    assert p.configs_dir == REPO / "configs"  # code files never move
    assert not (tmp_path / "models").exists()  # building Paths creates nothing
    p.ensure_dirs()
    assert (tmp_path / "models" / "Stable-diffusion").is_dir()
    assert (tmp_path / "outputs").is_dir()


def test_ckpt_dir_is_searched_first(tmp_path):
    p = paths.from_cmd_opts(parse("--ckpt-dir", str(tmp_path)))
    assert p.ckpt_dirs[0] == tmp_path
    assert p.ckpt_dirs[1] == REPO / "models" / "Stable-diffusion"


def test_every_flag_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf8")
    flags = [s for action in cmd_args.make_parser()._actions for s in action.option_strings if s != "-h"
             and s != "--help"]
    assert [f for f in flags if f"`{f}" not in readme] == []
