"""Family detection from original-layout key shapes, and the NAME.json / NAME.yaml overrides."""
import json

import pytest
import torch

from modules import model_families
from modules.checkpoint_export import original_state_dict
from modules.model_families import FAMILIES, UnknownModelError, detect_family, family_from_override
from tests.conftest_models import one_thread  # noqa: F401  (autouse fixture)
from tests.factories import make_tiny_components

FAMILY_IDS = [family.id for family in FAMILIES]


def family_shapes(family_id: str) -> dict:
    """Key -> shape of a tiny random model of this family in the original single-file layout."""
    parts = make_tiny_components(family_id)
    state = original_state_dict(parts["unet"], parts["vae"], parts["text_encoder"], parts["text_encoder_2"])
    shapes = {key: tuple(tensor.shape) for key, tensor in state.items()}
    if model_families.get_family(family_id).prediction_type == "v_prediction":
        shapes[model_families.V_PRED_MARKER] = (0,)
    return shapes


@pytest.fixture(scope="module")
def all_shapes():
    return {family_id: family_shapes(family_id) for family_id in FAMILY_IDS}


@pytest.mark.parametrize("family_id", FAMILY_IDS)
def test_each_family_is_detected_from_its_state_dict(all_shapes, family_id):
    assert detect_family(all_shapes[family_id]).id == family_id


def test_no_two_registry_rows_match_the_same_state_dict(all_shapes):
    for family_id, shapes in all_shapes.items():
        matching = [family.id for family in FAMILIES if family.matches(shapes)]
        assert matching == [family_id]


def test_real_size_sd1_keys_are_sd1_not_demo(all_shapes):
    shapes = dict(all_shapes["sd1"])
    shapes[model_families.CLIP_L_TOKENS] = (49408, 768)
    assert detect_family(shapes).id == "sd1"


def test_v_pred_marker_on_a_family_without_a_v_row_switches_prediction(all_shapes):
    shapes = dict(all_shapes["sdxl"], v_pred=(0,))
    family = detect_family(shapes)
    assert (family.id, family.prediction_type) == ("sdxl", "v_prediction")


def test_ztsnr_marker_sets_zero_terminal_snr_on_any_family(all_shapes):
    assert not detect_family(all_shapes["easel-demo"]).zero_terminal_snr
    family = detect_family(dict(all_shapes["easel-demo"], v_pred=(0,), ztsnr=(0,)))  # ComfyUI's markers
    assert (family.id, family.prediction_type, family.zero_terminal_snr) == ("easel-demo", "v_prediction", True)
    assert detect_family(dict(all_shapes["sdxl"], v_pred=(0,), ztsnr=(0,))).zero_terminal_snr


def test_unknown_state_dict_error_lists_what_was_looked_for():
    with pytest.raises(UnknownModelError) as err:
        detect_family({"some.other.model.weight": (3, 3)})
    message = str(err.value)
    for family in FAMILIES:
        assert f"{family.id}: needs" in message
    assert model_families.UNET_IN in message and "dim 1 == 9" in message


def test_json_override_beside_a_checkpoint(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    assert family_from_override(str(ckpt)) is None
    (tmp_path / "model.json").write_text(json.dumps({"family": "sd2-v"}))
    assert family_from_override(str(ckpt)).id == "sd2-v"
    (tmp_path / "model.json").write_text(json.dumps({"family": "sdxl", "prediction_type": "v_prediction"}))
    family = family_from_override(str(ckpt))
    assert (family.id, family.prediction_type) == ("sdxl", "v_prediction")
    (tmp_path / "model.json").write_text(json.dumps({"family": "sdxl", "zero_terminal_snr": True}))
    assert family_from_override(str(ckpt)).zero_terminal_snr
    (tmp_path / "model.json").write_text(json.dumps({"family": "sdxl", "zero_terminal_snr": "yes"}))
    with pytest.raises(ValueError, match="zero_terminal_snr must be true or false"):
        family_from_override(str(ckpt))
    (tmp_path / "model.json").write_text(json.dumps({"family": "sd3"}))
    with pytest.raises(ValueError, match="unknown model family 'sd3'"):
        family_from_override(str(ckpt))


SD2_V_YAML = """
model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: 4
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
"""


@pytest.mark.parametrize("yaml_text, expected", [
    (SD2_V_YAML, ("sd2-v", "v_prediction")),
    (SD2_V_YAML.replace('parameterization: "v"', "linear_start: 0.00085"), ("sd2", "epsilon")),
    (SD2_V_YAML.replace('parameterization: "v"', "linear_start: 0.00085").replace("in_channels: 4", "in_channels: 9"),
     ("sd2-inpaint", "epsilon")),
    (SD2_V_YAML.replace('parameterization: "v"', "linear_start: 0.00085").replace("FrozenOpenCLIPEmbedder", "FrozenCLIPEmbedder"),
     ("sd1", "epsilon")),
    ("model:\n  target: sgm.models.diffusion.DiffusionEngine\n  params:\n    network_config:\n      params:\n        in_channels: 9\n",
     ("sdxl-inpaint", "epsilon")),
])
def test_yaml_override_reads_the_original_ldm_config(tmp_path, yaml_text, expected):
    (tmp_path / "model.yaml").write_text(yaml_text)
    family = family_from_override(str(tmp_path / "model.ckpt"))
    assert (family.id, family.prediction_type) == expected


def test_yaml_override_with_unknown_text_encoder_is_an_error(tmp_path):
    (tmp_path / "model.yaml").write_text(SD2_V_YAML.replace("FrozenOpenCLIPEmbedder", "T5Embedder"))
    with pytest.raises(ValueError, match="cannot tell the model family"):
        family_from_override(str(tmp_path / "model.safetensors"))


def test_families_describe_latents_and_previews():
    for family in FAMILIES:
        assert len(family.latent_rgb_factors) == family.latent_channels == 4
        assert all(len(row) == 3 for row in family.latent_rgb_factors)
        assert len(family.pad_tokens) == len(family.text_layouts) == (2 if family.conditioning == "sdxl" else 1)
    assert model_families.get_family("easel-demo").vae_scale_factor == 2
