"""Per-quarter bucketing of timesteps, used for the logged loss and accuracy curves."""

from __future__ import annotations

import torch

from genlab.models.timesteps import draw_timesteps_and_noise, quarter_means


def test_quarter_means_buckets_by_quarter_of_T() -> None:
    t = torch.tensor([0, 249, 250, 500, 999, 998])
    values = torch.tensor([1.0, 3.0, 10.0, 7.0, 4.0, 6.0])
    means = quarter_means(values, t, num_timesteps=1000)
    assert set(means) == {1, 2, 3, 4}
    assert means[1] == 2.0 and means[2] == 10.0 and means[3] == 7.0 and means[4] == 5.0


def test_empty_quarters_are_left_out() -> None:
    means = quarter_means(torch.tensor([2.0, 4.0]), torch.tensor([0, 10]), num_timesteps=100)
    assert list(means) == [1] and means[1] == 3.0


def test_draws_are_reproducible_and_in_range() -> None:
    x0 = torch.zeros(64, 1, 4, 4)
    t1, n1 = draw_timesteps_and_noise(x0, 50, torch.Generator().manual_seed(3))
    t2, n2 = draw_timesteps_and_noise(x0, 50, torch.Generator().manual_seed(3))
    assert torch.equal(t1, t2) and torch.equal(n1, n2)
    assert t1.min() >= 0 and t1.max() < 50 and n1.shape == x0.shape
