import pytest
import torch

from modules import rng

torch.set_num_threads(1)

SHAPE = (4, 8, 12)


def test_minus_one_gives_a_random_seed_in_a1111_range():
    seeds = {rng.fix_seed(-1) for _ in range(50)}
    assert len(seeds) > 40
    assert all(0 <= s < 4294967294 for s in seeds)
    assert isinstance(rng.fix_seed(None), int)


def test_fixed_seeds_are_kept_and_parsed():
    assert rng.fix_seed(1234) == 1234
    assert rng.fix_seed("1234") == 1234
    assert rng.fix_seed(1234.0) == 1234
    with pytest.raises(ValueError, match="seed"):
        rng.fix_seed("abc")
    with pytest.raises(ValueError, match="seed"):
        rng.fix_seed(1.5)


def test_noise_matches_a_cpu_generator_seeded_with_the_seed():
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42))
    assert torch.equal(rng.image_noise(SHAPE, 42), expected)
    assert not torch.equal(rng.image_noise(SHAPE, 43), expected)


def test_batch_image_equals_same_seed_alone():
    batch = rng.batch_noise((3, *SHAPE), [10, 11, 12])
    assert batch.shape == (3, *SHAPE)
    assert torch.equal(batch[1], rng.image_noise(SHAPE, 11))
    assert torch.equal(rng.batch_noise(SHAPE, [11])[0], batch[1])


def test_batch_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="seeds"):
        rng.batch_noise((2, *SHAPE), [1, 2, 3])


def test_variation_seed_strength_ends():
    base = rng.image_noise(SHAPE, 1)
    other = rng.image_noise(SHAPE, 2)
    assert torch.equal(rng.image_noise(SHAPE, 1, subseed=2, subseed_strength=0.0), base)
    assert torch.allclose(rng.image_noise(SHAPE, 1, subseed=2, subseed_strength=1.0), other, atol=1e-5)


def test_variation_is_spherical_and_keeps_the_noise_scale():
    base = rng.image_noise(SHAPE, 1)
    other = rng.image_noise(SHAPE, 2)
    mid = rng.image_noise(SHAPE, 1, subseed=2, subseed_strength=0.5)
    linear = 0.5 * base + 0.5 * other
    # a straight-line mix of two independent noises shrinks their norm by ~1/sqrt(2); slerp does not
    assert mid.norm() > linear.norm() * 1.3
    assert abs(mid.std().item() - base.std().item()) < 0.15
    # closer to each end than the far end is
    assert (mid - base).norm() < (other - base).norm()
    assert (mid - other).norm() < (other - base).norm()


def test_variation_needs_a_fixed_subseed():
    with pytest.raises(ValueError, match="subseed"):
        rng.image_noise(SHAPE, 1, subseed=-1, subseed_strength=0.3)
    with pytest.raises(ValueError, match="subseed_strength"):
        rng.image_noise(SHAPE, 1, subseed=2, subseed_strength=1.5)


def test_seed_resize_from_larger_size_pastes_old_noise_in_the_centre():
    # old image 64x32 px -> latent width 8, height 4; new latent (C, 8, 12) = 96x64 px
    old = rng.image_noise((4, 4, 8), 7)
    new = rng.image_noise(SHAPE, 7, seed_resize_from=(8, 4))
    assert new.shape == SHAPE
    # height 8 vs 4 -> offset 2; width 12 vs 8 -> offset 2
    assert torch.equal(new[:, 2:6, 2:10], old)
    plain = rng.image_noise(SHAPE, 7)
    assert torch.equal(new[:, 0, :], plain[:, 0, :])  # outside the paste: fresh noise at the new size


def test_seed_resize_from_smaller_size_crops_the_centre():
    # old 160x128 px -> latent (16, 20); new (8, 12): crop offsets 4 rows, 4 columns
    old = rng.image_noise((4, 16, 20), 7)
    new = rng.image_noise(SHAPE, 7, seed_resize_from=(20, 16))
    assert torch.equal(new, old[:, 4:12, 4:16])


def test_seed_resize_in_a_batch_matches_single_images():
    batch = rng.batch_noise((2, *SHAPE), [7, 8], seed_resize_from=(8, 4))
    assert torch.equal(batch[0], rng.image_noise(SHAPE, 7, seed_resize_from=(8, 4)))


def test_variation_with_seed_resize_mixes_at_the_old_size():
    old_mix = rng.image_noise((4, 4, 8), 7, subseed=9, subseed_strength=0.4)
    new = rng.image_noise(SHAPE, 7, subseed=9, subseed_strength=0.4, seed_resize_from=(8, 4))
    assert torch.equal(new[:, 2:6, 2:10], old_mix)


def test_seed_resize_zero_means_off():
    assert torch.equal(rng.image_noise(SHAPE, 7, seed_resize_from=(0, 0)), rng.image_noise(SHAPE, 7))


def test_generators_are_per_seed_and_reproducible():
    gens = rng.generators([5, 6], SHAPE)
    a = torch.randn(3, generator=gens[0])
    b = torch.randn(3, generator=gens[1])
    assert torch.equal(a, torch.randn(3, generator=rng.generators([5], SHAPE)[0]))
    assert not torch.equal(a, b)
    shifted = rng.generators([5], SHAPE, eta_noise_seed_delta=31337)[0]
    assert torch.equal(torch.randn(3, generator=shifted), torch.randn(3, generator=torch.Generator().manual_seed(5 + 31337)))


def test_step_noise_continues_after_the_initial_noise_instead_of_repeating_it():
    # A generator restarted at the seed would hand the sampler's first step a copy of
    # the initial noise; as in A1111, it continues the seed's stream past that draw.
    generator = torch.Generator().manual_seed(5)
    initial = torch.randn(SHAPE, generator=generator)
    assert torch.equal(initial, rng.image_noise(SHAPE, 5))
    first_step = torch.randn(SHAPE, generator=rng.generators([5], SHAPE)[0])
    assert torch.equal(first_step, torch.randn(SHAPE, generator=generator))
    assert abs(float(torch.corrcoef(torch.stack([first_step.flatten(), initial.flatten()]))[0, 1])) < 0.05


def test_dtype_is_applied():
    assert rng.image_noise(SHAPE, 1, dtype=torch.bfloat16).dtype == torch.bfloat16
