"""The demo model's training recipe: timestep sampling is reproducible and leans on high noise as documented."""
import torch

from training.train_demo import sample_timesteps


def test_timesteps_are_a_function_of_the_generator_seed():
    a = sample_timesteps(64, torch.Generator().manual_seed(3), 0.4, 600)
    b = sample_timesteps(64, torch.Generator().manual_seed(3), 0.4, 600)
    assert torch.equal(a, b)


def test_high_noise_share_moves_timesteps_into_the_high_range_and_keeps_the_full_range():
    t = sample_timesteps(20_000, torch.Generator().manual_seed(0), 0.4, 600)
    assert int(t.min()) == 0 and int(t.max()) == 999
    # uniform alone puts 40% at >= 600; with 40% drawn from 600..999 it is 0.6 * 0.4 + 0.4 = 64%
    assert abs(float((t >= 600).float().mean()) - 0.64) < 0.02
    plain = sample_timesteps(20_000, torch.Generator().manual_seed(0), 0.0, 600)
    assert abs(float((plain >= 600).float().mean()) - 0.40) < 0.02
