"""training.recipe: the shipped demo model's runs, one command, each stage starting from the last."""
import json
import re
from pathlib import Path

import pytest
import torch

from tests.test_demo_training_recipe import _tiny_run_args

REPO = Path(__file__).resolve().parent.parent


def _documented_command(out_folder: str) -> list[str]:
    """The train_demo arguments docs/demo-model.md gives for the run writing to `out_folder`."""
    text = (REPO / "docs" / "demo-model.md").read_text()
    match = re.search(r"training\.train_demo (--seed 1 --out training/runs/" + out_folder + r" \\\n(?:.*\\\n)*.*)", text)
    assert match, f"no documented command for {out_folder}"
    return match.group(1).replace("\\\n", " ").split()


def _comparable(argv: list[str]) -> dict:
    from training import train_demo

    args = vars(train_demo.parse_args(argv))
    for key in ("out", "export"):
        args.pop(key)
    for key in ("vae_from", "init_from"):   # the same file, however the path is written
        args[key] = str((REPO / args[key]).resolve()) if args[key] else ""
    return args


def test_the_shipped_recipe_runs_exactly_the_documented_commands_of_the_shipped_runs(tmp_path):
    from training.recipe import RECIPES, stage_argv

    demo16, demo21 = RECIPES["shipped"]
    first = stage_argv(demo16, tmp_path, tmp_path / "a.safetensors", None, [])
    # demo21 fine-tuned the file demo16 exported (docs: `demo16.safetensors`)
    second = stage_argv(demo21, tmp_path, tmp_path / "b.safetensors", REPO / "demo16.safetensors", [])
    assert _comparable(first) == _comparable(_documented_command("demo16"))
    assert _comparable(second) == _comparable(_documented_command("demo21"))
    with pytest.raises(ValueError, match="first"):
        stage_argv(demo21, tmp_path, tmp_path / "b.safetensors", None, [])


def test_one_command_trains_every_stage_from_the_file_of_the_stage_before(tmp_path, monkeypatch):
    from safetensors import safe_open

    from training import recipe, train_demo

    # the exports would rewrite the family config's scaling factor and schedule: not from a test
    monkeypatch.setattr(train_demo, "write_scaling_factor", lambda value: None)
    monkeypatch.setattr(train_demo, "write_family_schedule", lambda terminal_signal: None)
    tiny = _tiny_run_args(tmp_path, monkeypatch)[4:]          # without its --out and --export
    tiny += ["--unet-steps", "1", "--grounding-steps", "1"]
    final = tmp_path / "model.safetensors"
    record = recipe.main(["shipped", "--out", str(tmp_path / "runs"), "--export", str(final), *tiny])

    assert [s["name"] for s in record["stages"]] == ["demo16", "demo21"]
    first_export = tmp_path / "runs" / "demo16" / "easel-demo.safetensors"
    second = torch.load(tmp_path / "runs" / "demo21" / "checkpoint.pt", weights_only=False)["args"]
    assert second["init_from"] == second["vae_from"] == str(first_export)
    assert second["grounding_mode"] == "exclusive" and second["precision"] == "fp32"
    with safe_open(str(final), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.") for k in keys) and any(k.startswith("first_stage_model.") for k in keys)
    saved = json.loads((tmp_path / "runs" / "recipe.json").read_text())
    assert saved["total_minutes"] == pytest.approx(sum(s["wall_seconds"] for s in saved["stages"]) / 60, abs=0.05)
    assert saved["budget_minutes"] == 90.0

    # a rerun resumes: both stages are done, so it only exports again and trains no step
    rows_before = (tmp_path / "runs" / "demo21" / "losses.csv").read_text()
    recipe.main(["shipped", "--out", str(tmp_path / "runs"), "--export", str(final), *tiny])
    assert (tmp_path / "runs" / "demo21" / "losses.csv").read_text() == rows_before


@pytest.mark.parametrize("name, first_run", [("budget", "demo25"), ("scratch", "demo26")])
def test_the_recipes_from_nothing_start_from_no_file_and_run_their_documented_commands(tmp_path, name, first_run):
    from training.recipe import RECIPES, stage_argv

    first_stage, finetune = RECIPES[name]
    first = stage_argv(first_stage, tmp_path, tmp_path / "a.safetensors", None, [])
    # the budget is counted from nothing: the first stage trains its own VAE, and starts from no file
    assert "--vae-from" not in first and "--init-from" not in first
    second = stage_argv(finetune, tmp_path, tmp_path / "b.safetensors", REPO / f"{first_run}.safetensors", [])
    assert _comparable(first) == _comparable(_documented_command(first_run))
    assert _comparable(second) == _comparable(_documented_command(f"{first_run}-finetune"))


def test_the_reused_vae_recipe_is_demo16s_unet_phase_without_its_grounding_then_the_fine_tune(tmp_path):
    from training.recipe import RECIPES, SHIPPED_FILE, stage_argv

    first_stage, finetune = RECIPES["reused-vae"]
    first = _comparable(stage_argv(first_stage, tmp_path, tmp_path / "a.safetensors", None, []))
    demo16 = _comparable(stage_argv(RECIPES["shipped"][0], tmp_path, tmp_path / "a.safetensors", None, []))
    # the U-Net phase is step for step demo16's (a run without --grounding-steps stops where its
    # grounding phase would begin: tests/test_demo_training_recipe.py), on the shipped file's VAE
    grounding = {"grounding_weight", "ground_background", "ground_shape_nouns", "grounding_steps"}
    assert {k: v for k, v in first.items() if k not in grounding} == \
        {k: v for k, v in demo16.items() if k not in grounding}
    assert first["grounding_steps"] == 0 and first["grounding_weight"] == 0
    assert first["vae_from"] == str(SHIPPED_FILE.resolve())
    second = stage_argv(finetune, tmp_path, tmp_path / "b.safetensors", REPO / "demo28.safetensors", [])
    assert first == _comparable(_documented_command("demo28"))
    assert _comparable(second) == _comparable(_documented_command("demo28-finetune"))
