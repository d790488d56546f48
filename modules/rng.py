"""Seeds and initial noise with A1111's semantics (REFERENCE section 4).

All noise is drawn on the CPU from a torch.Generator seeded with the image's
own seed, then moved by the caller: the same seed gives the same image on
every device, and an image in a batch equals the same seed generated alone.
A CPU generator seeded with s draws exactly what A1111's "CPU" RNG source
draws after torch.manual_seed(s).
"""

from __future__ import annotations

import random

import torch

SEED_RANGE = 4294967294  # A1111 draws random seeds from [0, 4294967294)


def _as_int(value, field: str) -> int:
    """Seeds arrive from JSON, forms and infotext: accept ints, integral floats and digit strings."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{field}: must be a whole number (-1 for random), got {value!r}")


def fix_seed(seed) -> int:
    """-1 (or None / "") -> a random seed in [0, 4294967294); any other whole number is kept."""
    if seed is None or (isinstance(seed, str) and seed.strip() == ""):
        seed = -1
    seed = _as_int(seed, "seed")
    if seed == -1:
        return random.randrange(SEED_RANGE)
    return seed


def _randn(seed: int, shape) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device="cpu")


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from `low` (strength 0) to `high` (strength 1).

    As in A1111, noise of shape (C, H, W) is interpolated as C*W separate
    vectors along the H axis (dim 1); nearly parallel vectors fall back to a
    straight line, where the sphere formula divides by ~0.
    """
    low_dir = low / torch.linalg.vector_norm(low, dim=1, keepdim=True)
    high_dir = high / torch.linalg.vector_norm(high, dim=1, keepdim=True)
    dot = (low_dir * high_dir).sum(dim=1)
    if dot.mean() > 0.9995:
        return low * (1.0 - strength) + high * strength
    omega = torch.acos(dot.clamp(-1.0, 1.0))
    sin_omega = torch.sin(omega)
    w_low = (torch.sin((1.0 - strength) * omega) / sin_omega).unsqueeze(1)
    w_high = (torch.sin(strength * omega) / sin_omega).unsqueeze(1)
    return w_low * low + w_high * high


def _centre_into(small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    """Paste `small` (C,h,w) centred into a copy of `big` (C,H,W); where small is larger it is centre-cropped."""
    out = big.clone()
    _, h_out, w_out = out.shape
    _, h_in, w_in = small.shape
    h, w = min(h_in, h_out), min(w_in, w_out)
    # offset into the destination when growing, into the source when shrinking
    dy, dx = (h_out - h_in) // 2, (w_out - w_in) // 2
    ty, tx = max(dy, 0), max(dx, 0)
    sy, sx = max(-dy, 0), max(-dx, 0)
    out[:, ty:ty + h, tx:tx + w] = small[:, sy:sy + h, sx:sx + w]
    return out


def image_noise(shape_chw, seed, subseed=-1, subseed_strength=0.0, seed_resize_from=(0, 0),
                dtype=torch.float32) -> torch.Tensor:
    """Initial latent noise (C, H, W) for one image, drawn on the CPU.

    subseed / subseed_strength: A1111's variation seed, noise =
    slerp(strength, noise(seed), noise(subseed)).
    seed_resize_from: A1111's "Seed resize from" as a LATENT (width, height),
    i.e. the pixel size divided by the family's VAE factor (8 for SD); the
    noise is drawn at that size and pasted centred into (or cropped out of)
    noise drawn at the new size, so the composition of the old size survives.
    (0, 0) or any non-positive side means no resize.
    """
    shape = tuple(int(v) for v in shape_chw)
    if len(shape) != 3:
        raise ValueError(f"shape_chw: expected (channels, height, width), got {shape_chw!r}")
    seed = _as_int(seed, "seed")
    if seed == -1:
        raise ValueError("seed: -1 must be replaced by a real seed (rng.fix_seed) before drawing noise")
    strength = float(subseed_strength or 0.0)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"subseed_strength: must be between 0 and 1, got {subseed_strength!r}")

    resize_w, resize_h = (int(v) for v in (seed_resize_from or (0, 0)))
    noise_shape = shape
    if resize_w > 0 and resize_h > 0:
        noise_shape = (shape[0], resize_h, resize_w)

    subnoise = None
    if strength > 0.0:
        subseed = _as_int(subseed, "subseed")
        if subseed == -1:
            raise ValueError("subseed: -1 must be replaced by a real seed (rng.fix_seed) before drawing noise")
        subnoise = _randn(subseed, noise_shape)

    noise = _randn(seed, noise_shape)
    if subnoise is not None:
        noise = slerp(strength, noise, subnoise)
    if noise_shape != shape:
        noise = _centre_into(noise, _randn(seed, shape))
    return noise.to(dtype)


def batch_noise(shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from=(0, 0),
                dtype=torch.float32) -> torch.Tensor:
    """Noise (B, C, H, W): one image_noise per seed, so each image is independent of its batch.

    `shape` is (C, H, W) or (B, C, H, W) with B == len(seeds); `subseeds`
    defaults to no variation (then subseed_strength must be 0).
    """
    shape = tuple(shape)
    seeds = list(seeds)
    if len(shape) == 4:
        if shape[0] != len(seeds):
            raise ValueError(f"seeds: {len(seeds)} seeds for a batch of {shape[0]}")
        shape = shape[1:]
    subseeds = [-1] * len(seeds) if subseeds is None else list(subseeds)
    if len(subseeds) != len(seeds):
        raise ValueError(f"subseeds: {len(subseeds)} subseeds for {len(seeds)} seeds")
    return torch.stack([
        image_noise(shape, seed, subseed, subseed_strength, seed_resize_from, dtype)
        for seed, subseed in zip(seeds, subseeds)
    ])


def generators(seeds, noise_shape, eta_noise_seed_delta: int = 0) -> list[torch.Generator]:
    """One CPU generator per image for the noise ancestral/SDE samplers add at each step.

    Pass the list as `generator=` to a diffusers scheduler's step(): it draws
    each image's noise from its own generator, keeping batch images equal to
    single ones.

    As in A1111, each generator continues from its seed past the draw of the
    image's initial noise (`noise_shape`, (C, H, W)). Restarting it at the
    seed would make the first step's fresh noise a copy of the initial noise,
    which the sampler has just started removing: the two add up instead of
    mixing, and the excess survives as grain in the finished image.
    A non-zero eta_noise_seed_delta (A1111's ENSD setting) instead starts each
    generator afresh at seed + delta.
    """
    delta = _as_int(eta_noise_seed_delta, "eta_noise_seed_delta")
    shape = tuple(int(v) for v in noise_shape)
    out = []
    for s in seeds:
        generator = torch.Generator(device="cpu").manual_seed(_as_int(s, "seed") + delta)
        if delta == 0:
            torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")  # skip the initial noise
        out.append(generator)
    return out
