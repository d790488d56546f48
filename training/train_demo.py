"""Train the Easel demo model (64x64 latent diffusion, SD1 family layout) on CPU.

One command, reproducible from the seed, resumable:

    venv/bin/python -m training.train_demo --seed 0 --out training/runs/demo

The shipped model starts from run demo16: the U-Net phase of seed 1 on the VAE of
seed 0's phase 1, which the shipped file holds bit for bit, with a quiet
padding and a last phase of token grounding (88 min on 2 cores):

    venv/bin/python -m training.train_demo --seed 1 --out training/runs/demo16 \
        --vae-from models/Stable-diffusion/easel-demo.safetensors \
        --padding-weight 0.02 --padding-target colourless \
        --grounding-weight 0.02 --ground-background --no-ground-shape-nouns --grounding-steps 600

then fine-tuned from that file for 400 steps with exclusive grounding (run demo21;
22.7 min in fp32 on 2 cores without bf16 units). `python -m training.recipe shipped`
runs both commands in one (training/recipe.py holds them; docs/demo-model.md
writes them out, and a test keeps the two the same).

Phase 1 trains the small KL autoencoder (f=2), then freezes it and measures its
latent std (-> scaling_factor). Phase 2 trains the U-Net
and the CLIP-style text encoder jointly on frozen-VAE latents. Every batch is a
pure function of (seed, step), so a resumed run continues exactly where the
interrupted one stopped. Checkpoints go to OUT/checkpoint.pt every few minutes.
At the end the EMA weights are saved in diffusers format under OUT/final/ and
exported to the original single-file layout (training/export_demo.py).

Phase 2 also trains small classifiers on the text encoder's pooled output to
recover what each caption names (training/caption_heads.py): without them the
encoder never told "left" from "right" and the model ignored position words;
and one on the per-token states that ties each noun to the colour word before
it (the background follows its colour word: 80% -> 100%).

Measured on this 2-core machine (glibc malloc tuning on): about 0.33 s per VAE
step and 0.98-1.36 s per U-Net step, so the defaults (1,200 + 3,600 steps)
take 80-90 min. docs/demo-model.md has the shipped run's numbers.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The cores are shared with other work: OpenMP threads that spin while waiting
# for a descheduled sibling burn the time the other thread needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from modules.devices import native_bf16
from training.caption_heads import SIDE_HEADS
from training.quiet_padding import align_padding, padding_loss, without_colours
from training.shapes_dataset import TWO_OBJECT_LAYOUTS, ShapesDataset
from training.token_grounding import TokenGrounding, record_cross_attention

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs" / "easel-demo"
TOKENIZER_DIR = REPO / "configs" / "clip-tokenizer"
MAX_TOKENS = 77


# ---------------------------------------------------------------- models

def load_tokenizer():
    from transformers import CLIPTokenizer
    # transformers v5 names: vocab= / merges= (v4's vocab_file= is silently ignored).
    return CLIPTokenizer(vocab=str(TOKENIZER_DIR / "vocab.json"), merges=str(TOKENIZER_DIR / "merges.txt"))


def _read_config(sub: str) -> dict:
    path = CONFIG_DIR / sub / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing family config {path} (the easel-demo architecture lives there)")
    return json.loads(path.read_text())


def build_models(seed: int):
    """Fresh U-Net, VAE and text encoder from configs/easel-demo (the single source of truth)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vae = AutoencoderKL.from_config(_read_config("vae"))
    unet = UNet2DConditionModel.from_config(_read_config("unet"))
    te_cfg = CLIPTextConfig(**{k: v for k, v in _read_config("text_encoder").items()
                              if k not in ("architectures", "transformers_version", "model_type")})
    # Eager attention and the classic processor for short sequences (77 tokens,
    # <=256 pixels): SDPA's backward is slow there on CPU. The VAE's mid-block
    # attends over 1024 pixels, where SDPA was measured 3-5x faster.
    te_cfg._attn_implementation = "eager"
    text_encoder = CLIPTextModel(te_cfg)
    unet.set_attn_processor(AttnProcessor())
    vae.set_attn_processor(AttnProcessor2_0())
    return unet, vae, text_encoder


def encode_text(text_encoder, tokenizer, captions: list[str]):
    """(token ids, encoder output), SD1 style, exactly as Easel encodes at inference: BOS,
    tokens, EOS padded with EOS to 77. The U-Net reads `last_hidden_state` (final-layer-norm
    hidden states); the caption heads read `pooler_output`, the noun-colour head the
    per-token states at the ids it labels."""
    ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                    return_tensors="pt").input_ids.to(text_encoder.device)
    return ids, text_encoder(ids)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------- schedule helpers

SCHEDULER_CONFIG = CONFIG_DIR / "scheduler" / "scheduler_config.json"


def _base_scheduler_config() -> dict:
    """The family's SD1 schedule, without the trained_betas a previous rescaled run wrote there."""
    return {**json.loads(SCHEDULER_CONFIG.read_text()), "trained_betas": None}


def training_alphas_cumprod(zero_terminal_snr: bool, terminal_signal: float | None = None) -> torch.Tensor:
    """Signal levels of the family's schedule (configs/easel-demo/scheduler), the same ones
    Easel samples with: SD1's, rescaled to zero terminal SNR, or to keep `terminal_signal`
    (sqrt alpha-bar) of the image at the last step."""
    from modules import noise_schedule

    config = _base_scheduler_config()
    if zero_terminal_snr:
        return noise_schedule.zero_terminal_snr_alphas_cumprod(config).float()
    if terminal_signal is not None:
        return noise_schedule.terminal_signal_alphas_cumprod(config, terminal_signal).float()
    return torch.cumprod(1.0 - noise_schedule.base_betas(config), 0).float()


def write_family_schedule(terminal_signal: float | None):
    """Record a rescaled training schedule in the family config as explicit trained_betas (every
    sampler honours those), or clear them for SD1's own schedule."""
    from modules import noise_schedule

    config = json.loads(SCHEDULER_CONFIG.read_text())
    config["trained_betas"] = None if terminal_signal is None else noise_schedule.betas_for(
        noise_schedule.terminal_signal_alphas_cumprod(_base_scheduler_config(), terminal_signal))
    SCHEDULER_CONFIG.write_text(json.dumps(config, indent=2) + "\n")


def diffusion_target(latents, noise, alphas_cumprod_t, prediction: str) -> torch.Tensor:
    """What the U-Net learns to output for noisy = sqrt(a) latents + sqrt(1 - a) noise."""
    if prediction == "v_prediction":
        return alphas_cumprod_t.sqrt() * noise - (1 - alphas_cumprod_t).sqrt() * latents
    if prediction == "epsilon":
        return noise
    raise ValueError(f"prediction must be 'epsilon' or 'v_prediction', not {prediction!r}")


def loss_weight(snr: torch.Tensor, prediction: str, gamma: float, floor: float = 0.0) -> torch.Tensor:
    """Per-sample weights that give every timestep the x0-error weight clamp(SNR, floor, gamma).

    Min-SNR (floor 0: x0 weight min(SNR, gamma)) keeps the easy low-noise steps
    from dominating; it is the shipped recipe. With zero terminal SNR it gives
    the last, pure-noise steps a weight of zero, and those are where the
    caption alone has to decide the layout; a floor keeps them training
    (floor 1 is what a plain v-prediction loss gives there).
    """
    x0_weight = torch.clamp(snr, min=floor, max=gamma)
    if prediction == "v_prediction":
        return x0_weight / (snr + 1)  # v-loss = (SNR + 1) x0-loss
    return x0_weight / snr  # epsilon-loss = SNR x0-loss


def channel_mean_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error of each latent channel's image mean, averaged over channels.

    The plain loss holds this term once (a pixel's squared error is its mean's plus its
    deviation's); adding it again with a weight W multiplies the gradient on the image
    means by 1 + W. Those means are mostly the background colour, which the caption
    alone has to decide at high noise: run demo26's model left one latent channel of
    it at the dataset mean there (docs/demo-model.md).
    """
    return ((pred - target).mean(dim=(2, 3)) ** 2).mean(dim=1)


def mean_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, t: torch.Tensor,
              from_t: int) -> torch.Tensor:
    """--mean-loss-weight's term: channel_mean_error with the plain loss's per-sample weights,
    counted only for the samples at t >= from_t (0: all), averaged over the whole batch."""
    high = (t >= from_t).to(pred.dtype)   # where the caption alone decides the means
    return (channel_mean_error(pred, target) * weights * high).mean()


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class EMA:
    def __init__(self, params, decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in params]

    @torch.no_grad()
    def update(self, params, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, params):
            s.mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, params):
        for s, p in zip(self.shadow, params):
            p.copy_(s)


# ---------------------------------------------------------------- training phases

# Training runs on the CPU (the documented recipe); --device cuda runs the same
# recipe faster. All randomness is drawn on the CPU from per-step generators and
# then moved, so the sequence of batches and noise is the same on every device.
_DEVICE = torch.device("cpu")


def _randn(shape, gen) -> torch.Tensor:
    return torch.randn(shape, generator=gen).to(_DEVICE)


def _batch(ds: ShapesDataset, step: int, batch_size: int):
    images, captions = ds.batch(step * batch_size, batch_size)
    return images_to_tensor(images).to(_DEVICE), captions


class _StepBatches(torch.utils.data.Dataset):
    """Item `step` is the batch for that training step (a pure function of the seed)."""

    def __init__(self, ds: ShapesDataset, batch_size: int, first_batch: int, coverage: bool = False):
        self.ds, self.batch_size, self.first_batch = ds, batch_size, first_batch
        self.coverage = coverage

    def __len__(self):
        return 10**9

    def __getitem__(self, step: int):
        drawn = self.ds.batch((self.first_batch + step) * self.batch_size, self.batch_size, self.coverage)
        coverage = torch.from_numpy(drawn[2]) if self.coverage else None
        return torch.from_numpy(drawn[0]), drawn[1], coverage


def _batches(ds: ShapesDataset, batch_size: int, first_batch: int, start: int, stop: int, workers: int,
             coverage: bool = False):
    """Yield (step, images in [-1,1] on the device, captions, object coverage or None) for steps
    start..stop-1. workers > 0 draws images in background processes (same batches, only faster)."""
    source = _StepBatches(ds, batch_size, first_batch, coverage)
    if workers <= 0:
        steps = ((step, source[step]) for step in range(start, stop))
    else:
        loader = torch.utils.data.DataLoader(source, batch_size=None, sampler=range(start, stop),
                                             num_workers=workers, prefetch_factor=4)
        steps = zip(range(start, stop), loader)
    for step, (images, captions, cover) in steps:
        yield step, images_to_tensor(images.numpy()).to(_DEVICE), captions, cover


_BF16 = True  # set by run() from --precision


def training_precision(choice: str, device: torch.device) -> str:
    """--precision auto picks bf16 where it is native and fp32 where it would be emulated: on a
    2-core Xeon without AVX-512 bf16, a U-Net step of the shipped recipe took 5.35 s in bf16
    and 3.4 s in fp32 (with it, about 1.3 s in bf16)."""
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else "fp32"


def _autocast():
    return torch.autocast(_DEVICE.type, dtype=torch.bfloat16, enabled=_BF16)


def vae_step(vae, x, gen, kl_weight: float):
    with _autocast():
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * _randn(posterior.mean.shape, gen)
        rec = vae.decode(z).sample.float()
    kl = posterior.kl().mean() / x[0].numel()
    l1 = (rec - x).abs().mean()
    loss = l1 + F.mse_loss(rec, x) + kl_weight * kl
    return loss, l1


def sample_timesteps(count: int, gen, high_share: float, high_from: int) -> torch.Tensor:
    """Training timesteps: uniform over 0..999, except a `high_share` of them uniform over high_from..999.

    The layout of an image (background colour, where the object goes) is
    decided at high noise, where an epsilon-prediction loss carries only a
    faint x0 signal (about SNR times the x0 error, SNR < 0.05 above t=750):
    drawing more high-noise timesteps gives those decisions more of the
    training signal.
    """
    uniform = torch.randint(0, 1000, (count,), generator=gen)
    high = torch.randint(high_from, 1000, (count,), generator=gen)
    pick_high = torch.rand(count, generator=gen) < high_share
    return torch.where(pick_high, high, uniform)


def unet_step(unet, text_encoder, tokenizer, vae, x, captions, gen, alphas, args, side_heads=(),
              grounding=None, coverage=None):
    """(weighted loss, mean raw diffusion loss, {side loss name: loss}) of one U-Net batch.

    side_heads: (SideHead, module, weight) for each training-only classifier in use.
    grounding: (TokenGrounding, the recorded-maps list of record_cross_attention, weight), with
    coverage the (batch, 2, 64, 64) object coverage of the batch (training/token_grounding.py)."""
    b = x.shape[0]
    drop = torch.rand(b, generator=gen) < args.caption_dropout
    captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
    with torch.no_grad(), _autocast():
        posterior = vae.encode(x).latent_dist
        latents = (posterior.mean + posterior.std * _randn(posterior.mean.shape, gen)).float()
    latents = latents * args.scaling_factor
    noise = _randn(latents.shape, gen)
    noise = noise + args.offset_noise * _randn((b, latents.shape[1], 1, 1), gen)
    t_cpu = sample_timesteps(b, gen, args.high_noise_share, args.high_noise_from)
    t = t_cpu.to(_DEVICE)
    alphas = alphas.to(_DEVICE)
    a = alphas[t].view(b, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    target = diffusion_target(latents, noise, a, args.prediction)
    if grounding is not None:
        grounding[1].clear()
    with _autocast():
        ids, encoded = encode_text(text_encoder, tokenizer, captions)
        pred = unet(noisy, t, encoder_hidden_states=encoded.last_hidden_state).sample.float()
    snr = alphas[t] / (1 - alphas[t])
    per = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    weights = loss_weight(snr, args.prediction, args.min_snr_gamma, args.min_snr_floor)
    loss = (per * weights).mean()
    side = {}
    for spec, head, weight in side_heads:
        side[spec.name] = head.side_loss(encoded, ids, captions)
        loss = loss + weight * side[spec.name]
    if grounding is not None:
        grounder, maps, weight = grounding
        side["grounding"] = grounder.loss(maps, grounder.token_objects(ids, captions), coverage)
        maps.clear()
        loss = loss + weight * side["grounding"]
    if args.padding_weight > 0:
        eot = tokenizer.eos_token_id
        with torch.no_grad(), _autocast():
            if args.padding_target == "empty":
                quiet = encode_text(text_encoder, tokenizer, [""])[1].last_hidden_state
            else:   # each caption's own, without its colour words
                quiet_ids, quiet = encode_text(text_encoder, tokenizer, [without_colours(c) for c in captions])
                quiet = align_padding(quiet.last_hidden_state, quiet_ids, ids, eot)
        side["padding"] = padding_loss(encoded.last_hidden_state, ids, quiet, eot)
        loss = loss + args.padding_weight * side["padding"]
    if args.mean_loss_weight > 0:
        side["mean"] = mean_loss(pred, target, weights, t, args.mean_loss_from)
        loss = loss + args.mean_loss_weight * side["mean"]
    return loss, per.mean(), side


# ---------------------------------------------------------------- checkpointing

def save_checkpoint(path: Path, state: dict):
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


SCHEDULE_FILE = "schedule.json"


def write_schedule(final: Path, prediction: str, zero_terminal_snr: bool, terminal_signal: float | None = None):
    """What the U-Net was trained to predict, on which schedule: the export marks the checkpoint with it."""
    (final / SCHEDULE_FILE).write_text(json.dumps(
        {"prediction_type": prediction, "zero_terminal_snr": zero_terminal_snr, "terminal_signal": terminal_signal},
        indent=2) + "\n")


def write_scaling_factor(value: float):
    """Record the measured latent scale in the family config (loading uses it)."""
    path = CONFIG_DIR / "vae" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["scaling_factor"] = round(float(value), 5)
    path.write_text(json.dumps(cfg, indent=2) + "\n")


VAE_RECIPE = ("vae_seed", "vae_steps", "vae_batch_size", "vae_crop", "vae_full_steps", "vae_full_batch_size",
              "vae_lr", "kl_weight")


def _vae_args(run_args: dict) -> dict:
    """A run's arguments with its VAE seed made explicit (--vae-seed defaults to --seed; older runs lack it)."""
    vae_seed = run_args.get("vae_seed")
    return {**run_args, "vae_seed": run_args["seed"] if vae_seed is None else vae_seed}


def reuse_vae(args, checkpoint_path: Path, vae, opt_vae) -> dict:
    """Start phase 2 from the frozen VAE of an earlier run with the same VAE recipe.

    Phase 1 depends only on the seed and the VAE arguments, so its result is the
    one this run would compute. The training state records the earlier run's
    VAE time, so the summary's wall time still counts the whole recipe."""
    ck = torch.load(checkpoint_path, weights_only=False, map_location=_DEVICE)
    earlier, now = _vae_args(ck["args"]), _vae_args(vars(args))
    differ = [k for k in VAE_RECIPE if earlier.get(k) != now[k]]
    if differ:
        raise ValueError(f"{checkpoint_path} used a different VAE recipe ({', '.join(differ)}); cannot reuse its VAE")
    if ck["state"]["phase"] == "vae":
        raise ValueError(f"{checkpoint_path} has not finished its VAE phase")
    vae.load_state_dict(ck["vae"]); opt_vae.load_state_dict(ck["opt_vae"])
    vae_seconds = ck["state"].get("vae_seconds") or _vae_seconds_from_log(checkpoint_path.parent / "losses.csv")
    print(f"reusing the VAE of {checkpoint_path} (phase 1 took {vae_seconds:.0f} s there)", flush=True)
    return {"phase": "unet", "step": 0, "elapsed": vae_seconds, "vae_seconds": vae_seconds,
            "scaling_factor": ck["state"]["scaling_factor"], "vae_rec_l1": ck["state"]["vae_rec_l1"],
            "vae_from": str(checkpoint_path)}


def measure_vae(vae, seed: int) -> tuple[float, float]:
    """Freeze and measure a VAE on 128 unseen images: (scaling factor = 1 / latent std,
    mean absolute reconstruction error in 0-255 units)."""
    vae.eval()
    held = ShapesDataset(seed=seed + 777, include_held_out=True)
    errs, zs = [], []
    with torch.no_grad():
        for i in range(4):
            x, _ = _batch(held, i, 32)
            post = vae.encode(x).latent_dist
            zs.append(post.mean)
            rec = vae.decode(post.mean).sample.clamp(-1, 1)
            errs.append(((rec - x).abs() * 127.5).mean().item())
    return float(1.0 / torch.cat(zs).std()), float(np.mean(errs))


def reuse_vae_of_model(model_path: Path, vae) -> dict:
    """Start phase 2 from the VAE inside an exported model file (the shipped demo model, say),
    loaded through Easel's own checkpoint loader.

    Unlike a checkpoint.pt of the same recipe, this VAE need not be the one this seed would
    train: it serves runs that vary only the U-Net phase (another seed, another loss), which
    then share the shipped model's VAE and scaling factor. Its phase-1 time is not counted."""
    from modules import sd_models

    loaded = sd_models.load_model(model_path, dtype=torch.float32)
    vae.load_state_dict(loaded.vae.state_dict())
    scaling_factor = float(loaded.vae.config.scaling_factor)
    _, rec_l1 = measure_vae(vae, 0)
    print(f"reusing the VAE of {model_path} (scaling factor {scaling_factor:.5f}, "
          f"reconstruction error {rec_l1:.2f}/255)", flush=True)
    return {"phase": "unet", "step": 0, "elapsed": 0.0, "vae_seconds": 0.0, "scaling_factor": scaling_factor,
            "vae_rec_l1": rec_l1, "vae_from": str(model_path)}


def init_from_model(model_path: Path, unet, text_encoder) -> None:
    """Start the U-Net and text encoder from an exported model file (fine-tuning probes: what a
    change to the data or the losses does to a trained model in minutes, not a whole run). The
    caption classifiers and the optimizer start fresh; the file is read by Easel's own loader."""
    from modules import sd_models

    loaded = sd_models.load_model(model_path, dtype=torch.float32)
    unet.load_state_dict(loaded.unet.state_dict())
    text_encoder.load_state_dict(loaded.text_encoders[0].state_dict())
    print(f"U-Net and text encoder start from {model_path}", flush=True)


def _smoothed(smooth: float | None, raw: float) -> float:
    """The U-Net phases' progress-bar loss: an exponential mean of the raw loss."""
    return raw if smooth is None else 0.98 * smooth + 0.02 * raw


def _smoothed_loss_from_log(losses_csv: Path) -> float | None:
    """The progress bar's smoothed raw loss at the end of the last U-Net-type phase in the log."""
    rows = [r for r in csv.reader(open(losses_csv)) if r and r[0] in ("unet", "ground")]
    smooth = None
    for row in (r for r in rows if r[0] == rows[-1][0]):
        smooth = _smoothed(smooth, float(row[3]))
    return smooth


def _vae_seconds_from_log(losses_csv: Path) -> float:
    """The elapsed time of the last VAE row of a run's losses.csv (older checkpoints lack vae_seconds)."""
    rows = [row for row in csv.reader(open(losses_csv)) if row and row[0] == "vae"]
    if not rows:
        raise ValueError(f"{losses_csv} has no VAE rows to time phase 1 by")
    return float(rows[-1][-1])


def run(args):
    global _DEVICE, _BF16
    from modules import malloc_tuning

    # 1.35 -> 0.94 s per U-Net step on 2 cores: freed activations stay mapped (see the module)
    malloc_tuning.keep_freed_memory()
    torch.set_num_threads(args.threads)
    _DEVICE = torch.device(args.device)
    precision = training_precision(args.precision, _DEVICE)
    _BF16 = precision == "bf16"
    print(f"precision: {precision} (--precision {args.precision})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    tokenizer = load_tokenizer()
    unet, vae, text_encoder = build_models(args.seed)
    # --vae-seed: the VAE phase exactly as a run with that seed would train it (its initial weights,
    # batches and noise), the U-Net phase still from --seed
    vae_seed = _vae_args(vars(args))["vae_seed"]
    if vae_seed != args.seed:
        vae = build_models(vae_seed)[1]
    for module in (unet, vae, text_encoder):
        module.to(_DEVICE)
    ds = ShapesDataset(seed=args.seed, two_object_share=args.two_object_share,
                       two_object_layout=args.two_object_layout)
    vae_ds = ds if vae_seed == args.seed else ShapesDataset(
        seed=vae_seed, two_object_share=args.two_object_share, two_object_layout=args.two_object_layout)
    alphas = training_alphas_cumprod(args.zero_terminal_snr, args.terminal_signal)
    te_unet_params = list(unet.parameters()) + list(text_encoder.parameters())
    # training-only classifiers (training/caption_heads.py); the recipe without them is unchanged
    width = text_encoder.config.hidden_size
    side_heads = [(spec, spec.build(width, tokenizer).to(_DEVICE), getattr(args, spec.weight_arg))
                  for spec in SIDE_HEADS if getattr(args, spec.weight_arg) > 0]
    side_params = [p for _, head, _ in side_heads for p in head.parameters()]
    # cross-attention of each object's words pulled onto its pixels (training/token_grounding.py)
    # With --grounding-steps it is installed only for the last phase, on a U-Net that has learned its shapes.
    def install_grounding():
        return (TokenGrounding(tokenizer, args.ground_background, args.ground_shape_nouns,
                               exclusive=args.grounding_mode == "exclusive"),
                record_cross_attention(unet),
                args.grounding_weight)
    grounding = install_grounding() if args.grounding_weight > 0 and not args.grounding_steps else None
    opt_vae = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0, fused=True)
    opt = torch.optim.AdamW(te_unet_params + side_params, lr=args.lr,
                            weight_decay=0.01, fused=True)
    # with classifiers on the text side, the U-Net and the text side are clipped apart, so the
    # classifiers' gradient cannot shrink the U-Net's steps
    clip_groups = [te_unet_params] if not side_params else [
        list(unet.parameters()), list(text_encoder.parameters()) + side_params]
    ema = EMA(te_unet_params, args.ema_decay)
    state = {"phase": "vae", "step": 0, "elapsed": 0.0, "scaling_factor": None, "vae_rec_l1": None}

    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False, map_location=_DEVICE)
        if ck["args"]["seed"] != args.seed:
            raise ValueError(f"checkpoint {ckpt_path} was trained with seed {ck['args']['seed']}, not {args.seed}")
        unet.load_state_dict(ck["unet"]); vae.load_state_dict(ck["vae"])
        text_encoder.load_state_dict(ck["text_encoder"])
        for spec, head, _ in side_heads:
            head.load_state_dict(ck[spec.checkpoint_key])
        opt_vae.load_state_dict(ck["opt_vae"]); opt.load_state_dict(ck["opt"])
        ema.shadow = ck["ema"]
        state = ck["state"]
        print(f"resumed from {ckpt_path}: phase {state['phase']} step {state['step']}", flush=True)
    elif args.vae_from.endswith((".safetensors", ".ckpt")):
        state = reuse_vae_of_model(Path(args.vae_from), vae)
    elif args.vae_from:
        state = reuse_vae(args, Path(args.vae_from), vae, opt_vae)
    if state["phase"] == "ground" and not args.grounding_steps:
        state["phase"] = "done"   # a checkpoint from the end of the U-Net phase, resumed without a grounding phase
    if args.init_from and not ckpt_path.exists():
        init_from_model(Path(args.init_from), unet, text_encoder)
        ema = EMA(te_unet_params, args.ema_decay)   # the EMA starts at the model's weights

    loss_log = open(out / "losses.csv", "a", newline="")
    writer = csv.writer(loss_log)

    def checkpoint():
        save_checkpoint(ckpt_path, {
            "args": vars(args), "state": state, "unet": unet.state_dict(), "vae": vae.state_dict(),
            "text_encoder": text_encoder.state_dict(), "opt_vae": opt_vae.state_dict(),
            "opt": opt.state_dict(), "ema": ema.shadow,
            **{spec.checkpoint_key: head.state_dict() for spec, head, _ in side_heads}})

    run_start = time.time() - state["elapsed"]
    last_ckpt = time.time()

    # ---- phase 1: VAE
    if state["phase"] == "vae":
        vae.train()
        bar = tqdm(total=args.vae_steps, initial=state["step"], desc="vae", mininterval=10,
                   file=sys.stdout, dynamic_ncols=False, ncols=100)
        smooth = None
        # Most steps use random crops: the VAE is convolutional and learns its local
        # near-identity on a quarter of the pixels per image. Crop training alone left
        # a gap on whole images (measured: 6/255 on crops, 17/255 on 64x64), so the
        # last steps see whole images, where the norms and mid attention see full
        # statistics.
        crop_end = args.vae_steps - args.vae_full_steps
        stream = itertools.chain(
            _batches(vae_ds, args.vae_batch_size, 0, min(state["step"], crop_end), crop_end, args.workers),
            _batches(vae_ds, args.vae_full_batch_size, 10**6, max(state["step"], crop_end), args.vae_steps, args.workers))
        for step, x, _, _ in stream:
            gen = torch.Generator().manual_seed(vae_seed * 1_000_003 + step)
            if step < crop_end and args.vae_crop < x.shape[-1]:
                oy, ox = torch.randint(0, x.shape[-1] - args.vae_crop + 1, (2,), generator=gen).tolist()
                x = x[..., oy:oy + args.vae_crop, ox:ox + args.vae_crop]
            for g in opt_vae.param_groups:
                g["lr"] = lr_at(step, args.vae_steps, args.vae_lr, 50)
            loss, l1 = vae_step(vae, x, gen, args.kl_weight)
            opt_vae.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt_vae.step()
            smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
            writer.writerow(["vae", step, f"{loss.item():.5f}", f"{l1.item() * 127.5:.3f}", f"{time.time() - run_start:.1f}"])
            state["step"] = step + 1
            state["elapsed"] = time.time() - run_start
            bar.set_postfix(loss=f"{smooth:.4f}", l1_255=f"{l1.item() * 127.5:.1f}")
            bar.update(1)
            if time.time() - last_ckpt > args.checkpoint_minutes * 60:
                loss_log.flush(); checkpoint(); last_ckpt = time.time()
        bar.close()
        state["scaling_factor"], state["vae_rec_l1"] = measure_vae(vae, vae_seed)
        state["phase"], state["step"] = "unet", 0
        state["vae_seconds"] = time.time() - run_start
        print(f"VAE frozen: reconstruction mean abs error {state['vae_rec_l1']:.2f}/255, "
              f"latent std {1 / state['scaling_factor']:.4f} -> scaling_factor {state['scaling_factor']:.5f}",
              flush=True)
        checkpoint(); last_ckpt = time.time()

    args.scaling_factor = state["scaling_factor"]
    vae.eval().requires_grad_(False)

    def train_unet(phase: str, steps: int, base_lr: float, warmup: int, offset: int):
        """Steps state["step"]..steps-1 of a U-Net + text encoder phase. offset: the steps of the
        phases before it, so the batches, noise and EMA warm-up go on where they left off."""
        nonlocal last_ckpt
        unet.train(); text_encoder.train()
        bar = tqdm(total=steps, initial=state["step"], desc=phase, mininterval=10,
                   file=sys.stdout, dynamic_ncols=False, ncols=100)
        smooth = None
        batches = _batches(ds, args.batch_size, 100_000 + offset, state["step"], steps, args.workers,
                           coverage=grounding is not None)
        for step, x, captions, coverage in batches:
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + 500_000 + offset + step)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, base_lr, warmup)
            loss, raw, side = unet_step(unet, text_encoder, tokenizer, vae, x, captions, gen, alphas, args, side_heads,
                                        grounding, coverage)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for group in clip_groups:
                torch.nn.utils.clip_grad_norm_(group, 1.0)
            opt.step()
            ema.update(te_unet_params, offset + step)
            smooth = _smoothed(smooth, raw.item())
            writer.writerow([phase, step, f"{loss.item():.5f}", f"{raw.item():.5f}", f"{time.time() - run_start:.1f}"]
                            + [f"{value.item():.4f}" for value in side.values()])  # caption, noun colour, noun identity, grounding, padding, mean
            state["step"] = step + 1
            state["elapsed"] = time.time() - run_start
            bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
            bar.update(1)
            if time.time() - last_ckpt > args.checkpoint_minutes * 60:
                loss_log.flush(); checkpoint(); last_ckpt = time.time()
            if args.measure_seconds and time.time() - run_start > args.measure_seconds:
                break
        bar.close()
        return smooth

    # ---- phase 2: U-Net + text encoder
    smooth = None
    if state["phase"] == "unet":
        smooth = train_unet("unet", args.unet_steps, args.lr, args.warmup, 0)
        if args.measure_seconds:
            return
        if args.grounding_steps:
            state["phase"], state["step"] = "ground", 0
        else:
            state["phase"] = "done"
        checkpoint()

    # ---- phase 3 (with --grounding-steps): the same training with the grounding loss on
    if state["phase"] == "ground":
        grounding = install_grounding()
        smooth = train_unet("ground", args.grounding_steps, args.grounding_lr, min(args.warmup, args.grounding_steps // 10),
                            args.unet_steps)
        if args.measure_seconds:
            return
        state["phase"] = "done"
        checkpoint()
    loss_log.close()
    if smooth is None:   # resumed after its last step: nothing trained in this call
        smooth = _smoothed_loss_from_log(out / "losses.csv")

    # ---- save EMA weights (diffusers format) and export
    ema.copy_to(te_unet_params)
    final = out / "final"
    unet.save_pretrained(final / "unet"); vae.save_pretrained(final / "vae")
    text_encoder.save_pretrained(final / "text_encoder")
    write_schedule(final, args.prediction, args.zero_terminal_snr, args.terminal_signal)
    summary = {"seed": args.seed, "vae_seed": vae_seed, "batch_size": args.batch_size, "vae_steps": args.vae_steps,
               "prediction": args.prediction, "zero_terminal_snr": args.zero_terminal_snr,
               "terminal_signal": args.terminal_signal,
               "high_noise_share": args.high_noise_share, "vae_from": state.get("vae_from"),
               "caption_loss_weight": args.caption_loss_weight, "noun_colour_weight": args.noun_colour_weight,
               "noun_identity_weight": args.noun_identity_weight, "grounding_weight": args.grounding_weight,
               "mean_loss_weight": args.mean_loss_weight, "mean_loss_from": args.mean_loss_from,
               "ground_background": args.ground_background, "ground_shape_nouns": args.ground_shape_nouns,
               "grounding_mode": args.grounding_mode, "grounding_steps": args.grounding_steps, "grounding_lr": args.grounding_lr,
               "padding_weight": args.padding_weight, "precision": precision,
               "padding_target": args.padding_target,
               "unet_steps": args.unet_steps, "wall_seconds": round(state["elapsed"], 1),
               "vae_reconstruction_l1_255": round(state["vae_rec_l1"], 3),
               "scaling_factor": round(state["scaling_factor"], 5),
               "final_unet_loss": round(smooth, 5) if smooth is not None else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("summary:", json.dumps(summary), flush=True)
    if not args.export:
        print(f"not exported (--export ''): diffusers weights in {final}", flush=True)
        return
    write_scaling_factor(state["scaling_factor"])
    write_family_schedule(args.terminal_signal)
    from training.export_demo import export
    export(final, args.export)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-seed", type=int, default=None,
                   help="train the VAE phase as a run with this seed would (default: --seed); the U-Net phase keeps --seed")
    p.add_argument("--out", default="training/runs/demo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="data-drawing processes (0: inline, right for 2 cores)")
    p.add_argument("--device", default="cpu", help="cpu (the documented recipe) or cuda (same recipe, faster)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="compute precision (bf16 autocast or fp32); auto: bf16 where the device computes it "
                        "natively (CUDA GPUs from Ampere on, CPUs with AVX-512 bf16 or AMX), fp32 where it would be emulated")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vae-steps", type=int, default=1200)
    p.add_argument("--vae-batch-size", type=int, default=32)
    p.add_argument("--vae-crop", type=int, default=32, help="train the VAE on random crops of this size")
    p.add_argument("--vae-full-steps", type=int, default=700, help="last VAE steps on whole images")
    p.add_argument("--vae-full-batch-size", type=int, default=8)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--unet-steps", type=int, default=3600)
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--offset-noise", type=float, default=0.1)
    p.add_argument("--min-snr-gamma", type=float, default=5.0)
    p.add_argument("--mean-loss-weight", type=float, default=0.0,
                   help="extra weight on the error of each latent channel's image mean (channel_mean_error: "
                        "the background colour, decided at high noise); 0 in the shipped recipe. 10 in a "
                        "fine-tune of demo26: background 58%% -> 86%%, but shape 75%% -> 50%% (docs/demo-model.md)")
    p.add_argument("--mean-loss-from", type=int, default=0,
                   help="--mean-loss-weight counts only at timesteps from this one on (at low noise the "
                        "noise's image mean cannot be told from the image's, so the term there is noise)")
    p.add_argument("--min-snr-floor", type=float, default=0.0,
                   help="lowest x0-error weight of a timestep (0: plain Min-SNR, the shipped recipe)")
    p.add_argument("--prediction", choices=("epsilon", "v_prediction"), default="epsilon",
                   help="what the U-Net predicts (v-prediction is well defined at zero SNR; epsilon is not)")
    p.add_argument("--zero-terminal-snr", action=argparse.BooleanOptionalAction, default=False,
                   help="rescale the SD1 schedule so the last timestep is pure noise, as sampling starts")
    p.add_argument("--terminal-signal", type=float, default=None,
                   help="rescale SD1's schedule so its last step keeps this much of the image (sqrt alpha-bar; "
                        "SD1 keeps 0.068); the export writes it into configs/easel-demo/scheduler as trained_betas")
    p.add_argument("--vae-from", default="",
                   help="reuse the frozen VAE of an earlier run's checkpoint.pt (same seed and VAE recipe: "
                        "phase 1 is deterministic, so this skips identical work), or of an exported model "
                        "file (.safetensors/.ckpt, any seed: for runs that vary only the U-Net phase)")
    p.add_argument("--caption-loss-weight", type=float, default=0.1,
                   help="weight of the caption-attribute classifiers on the text encoder's pooled output "
                        "(training/caption_heads.py; 0 turns them off, as in the previous recipe, whose model "
                        "followed 7%% of position words against 98%% with them)")
    p.add_argument("--noun-colour-weight", type=float, default=0.1,
                   help="weight of the noun-colour classifier on per-token states (training/caption_heads.py: "
                        "each shape noun or 'background' names the colour word before it). 0.1 in the shipped "
                        "run demo9s1: background 80%% -> 100%%, colour 85%% -> 88%%, shape 79%% -> 72%% against "
                        "0 (docs/demo-model.md)")
    p.add_argument("--noun-identity-weight", type=float, default=0.0,
                   help="weight of the noun-identity classifier on per-token states (training/caption_heads.py: "
                        "each shape noun or 'background' names itself). Off in the shipped recipe: run demo10 "
                        "(0.1, with noun colour 0.1) kept shape in the noun states but lost shape accuracy")
    p.add_argument("--grounding-weight", type=float, default=0.0,
                   help="weight of the token-grounding loss (training/token_grounding.py: the cross-attention of "
                        "each object's colour word and shape noun falls inside that object's pixels). Off by default. "
                        "From the first step it costs the shapes (runs demo11-15); run demo16 (the base of the shipped model) uses "
                        "0.02 with --grounding-steps 600 (docs/demo-model.md)")
    p.add_argument("--grounding-steps", type=int, default=0,
                   help="with --grounding-weight: 0 grounds from the first U-Net step; N > 0 trains the "
                        "U-Net phase without it, then N more steps with it (phase 'ground', its own cosine "
                        "schedule from --grounding-lr), so the grounding meets shapes already learned (run demo16, 600, shipped: shapes kept, "
                        "two-object colour unchanged at 22%%)")
    p.add_argument("--grounding-lr", type=float, default=2e-4,
                   help="peak learning rate of the --grounding-steps phase")
    p.add_argument("--grounding-mode", choices=("inside", "exclusive"), default="inside",
                   help="with --grounding-weight: 'inside' pulls each object's words onto that object (runs "
                        "demo11-19); 'exclusive' only keeps them off the other object of a two-object image, "
                        "leaving one-object images' attention free (training/token_grounding.py; run demo21, the shipped "
                        "fine-tune: two-object colour 22%% -> 50%%)")
    p.add_argument("--ground-background", action=argparse.BooleanOptionalAction, default=False,
                   help="with --grounding-weight, also ground the background's words onto the pixels no "
                        "object covers (training/token_grounding.py). On in run demo16, the base of the shipped model")
    p.add_argument("--ground-shape-nouns", action=argparse.BooleanOptionalAction, default=True,
                   help="with --grounding-weight, ground each object's shape noun as well as its colour word. "
                        "With it and a quiet padding (runs demo12/13) shape fell from 72%% to 36%%; "
                        "--no-ground-shape-nouns grounds the colour words only (run demo15: two-object colour "
                        "22%% -> 75%%, but shape 50%%; docs/demo-model.md)")
    p.add_argument("--padding-weight", type=float, default=0.0,
                   help="weight of the quiet-padding loss (training/quiet_padding.py: the text states after "
                        "the end-of-text token are pulled towards the empty caption's, so they cannot carry "
                        "the caption's colours to every pixel). Off by default; 0.02 colourless in runs demo16 and demo21 (shipped). Run demo12 (0.02, "
                        "with grounding 0.02 and --ground-background) took colour from 88%% to 97%% and two-object "
                        "colour from 22%% to 86%%, but shape fell from 72%% to 36%% (docs/demo-model.md)")
    p.add_argument("--padding-target", choices=("empty", "colourless"), default="empty",
                   help="what --padding-weight pulls the padding towards: the empty caption's padding (run "
                        "demo12), or the padding of the caption itself without its colour words, so that the "
                        "padding still names the shapes (run demo14, without grounding: shape 74%%, two-object "
                        "colour 25%%, as without it; docs/demo-model.md)")
    p.add_argument("--two-object-share", type=float, default=0.2,
                   help="share of training images with two objects")
    p.add_argument("--two-object-layout", choices=TWO_OBJECT_LAYOUTS, default="either",
                   help="how a two-object image places its pair: 'either' side by side or stacked at random "
                        "(the caption does not say which), 'side-by-side' always, so the first-named "
                        "object is always the left one")
    p.add_argument("--init-from", default="",
                   help="start the U-Net and text encoder from this exported model file instead of from "
                        "scratch (fine-tuning probes; with --vae-from the same file, no phase is trained "
                        "from nothing)")
    p.add_argument("--high-noise-share", type=float, default=0.4,
                   help="share of U-Net timesteps drawn from --high-noise-from..999 instead of 0..999")
    p.add_argument("--high-noise-from", type=int, default=600)
    p.add_argument("--export", default=str(REPO / "models" / "Stable-diffusion" / "easel-demo.safetensors"),
                   help="single-file output; '' skips the export and leaves configs/easel-demo untouched")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--measure-seconds", type=float, default=0.0,
                   help="throughput probe: stop phase 2 after this many seconds, no export")
    args = p.parse_args(argv)
    if args.terminal_signal is not None and args.zero_terminal_snr:
        p.error("--terminal-signal and --zero-terminal-snr both set the last step's signal; give one")
    if args.init_from and not args.vae_from:
        p.error("--init-from fine-tunes a trained U-Net: give --vae-from (the same file) so it keeps its VAE")
    if args.grounding_mode == "exclusive" and args.ground_background:
        p.error("--grounding-mode exclusive keeps words off the other object; the background has none: "
                "drop --ground-background")
    if args.grounding_steps and not args.grounding_weight > 0:
        p.error("--grounding-steps trains a grounding phase: give --grounding-weight too")
    return args


if __name__ == "__main__":
    run(parse_args())
