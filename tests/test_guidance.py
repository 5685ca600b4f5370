"""Classifier-free guidance as a Denoiser wrapper (Ho & Salimans 2022)."""

import numpy as np
import pytest
import torch

from edgediff.sampling.guidance import classifier_free_guidance


class Counting:
    def __init__(self, offset):
        self.offset, self.calls = offset, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return x * (1.0 / (1.0 + sigma)) + self.offset


X = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 1])
def test_scale_one_is_the_conditional_denoiser_with_one_call(scale):
    cond, uncond = Counting(0.3), Counting(-0.2)
    g = classifier_free_guidance(cond, uncond, scale)
    np.testing.assert_array_equal(g(X, 2.0), cond(X, 2.0))
    assert (cond.calls, uncond.calls) == (2, 0)


def test_scale_zero_is_unconditional_with_one_call():
    cond, uncond = Counting(0.3), Counting(-0.2)
    g = classifier_free_guidance(cond, uncond, 0.0)
    np.testing.assert_array_equal(g(X, 2.0), uncond(X, 2.0))
    assert (cond.calls, uncond.calls) == (0, 2)


@pytest.mark.parametrize("w", [2.0, 7.5, -0.5, 0.3])
def test_guided_is_u_plus_w_c_minus_u(w):
    cond, uncond = Counting(0.3), Counting(-0.2)
    g = classifier_free_guidance(cond, uncond, w)
    out = g(X, 0.7)
    assert (cond.calls, uncond.calls) == (1, 1)
    c, u = cond(X, 0.7), uncond(X, 0.7)
    np.testing.assert_array_equal(out, u + w * (c - u))
    np.testing.assert_allclose(out, X / 1.7 - 0.2 + w * 0.5, rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32


def test_guidance_on_torch_tensors():
    cond, uncond = Counting(0.3), Counting(-0.2)
    x = torch.from_numpy(X)
    out = classifier_free_guidance(cond, uncond, 3.0)(x, 1.0)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), X / 2.0 - 0.2 + 1.5, rtol=1e-5, atol=1e-6)
