"""EDM preconditioning (Karras et al. 2022, Table 1 and App. B.6) and the Runner → Denoiser bridge."""

import math

import numpy as np
import pytest

from edgediff.errors import InputError
from edgediff.format.precond import Preconditioning
from edgediff.sampling.denoiser import make_denoiser

SIGMAS = [0.002, 0.05, 0.5, 1.0, 3.7, 80.0]


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 0.25])
def test_coefficients_match_edm_table1(sigma_data):
    p = Preconditioning(sigma_data=sigma_data)
    assert p.c_skip(sigma_data) == pytest.approx(0.5)
    assert p.c_out(sigma_data) == pytest.approx(sigma_data / math.sqrt(2))
    for s in SIGMAS:
        assert p.c_skip(s) == pytest.approx(sigma_data**2 / (s**2 + sigma_data**2), rel=1e-12)
        assert p.c_out(s) == pytest.approx(s * sigma_data / math.sqrt(s**2 + sigma_data**2), rel=1e-12)
        assert p.c_in(s) == pytest.approx(1 / math.sqrt(s**2 + sigma_data**2), rel=1e-12)
        assert p.c_noise(s) == pytest.approx(math.log(s) / 4, rel=1e-12, abs=1e-15)
        assert p.c_out(s) ** 2 == pytest.approx(p.c_skip(s) * s**2, rel=1e-12)


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_unit_variance_input_and_target(sigma_data, sigma):
    """For x = y + σn with Var(y) = σ_data²: Var(c_in·x) = 1 and the effective target (y − c_skip·x)/c_out has
    unit variance (EDM App. B.6) — analytically and by Monte Carlo."""
    p = Preconditioning(sigma_data=sigma_data)
    cs, co, ci = p.c_skip(sigma), p.c_out(sigma), p.c_in(sigma)
    assert ci**2 * (sigma_data**2 + sigma**2) == pytest.approx(1.0, rel=1e-12)
    assert ((1 - cs) ** 2 * sigma_data**2 + cs**2 * sigma**2) / co**2 == pytest.approx(1.0, rel=1e-12)

    rng = np.random.default_rng(0)
    y = rng.standard_normal(200_000) * sigma_data
    x = y + sigma * rng.standard_normal(y.shape)
    assert (ci * x).var() == pytest.approx(1.0, abs=0.02)
    assert ((y - cs * x) / co).var() == pytest.approx(1.0, abs=0.02)


def test_limits():
    p = Preconditioning()
    assert p.c_skip(1e-6) == pytest.approx(1.0) and p.c_out(1e-6) == pytest.approx(0.0, abs=1e-5)
    assert p.c_skip(1e4) == pytest.approx(0.0, abs=1e-8) and p.c_out(1e4) == pytest.approx(p.sigma_data, rel=1e-6)


class RecordingRunner:
    def __init__(self, out=0.0):
        self.calls, self.out = [], out

    def __call__(self, x, t, label=None):
        self.calls.append((x, t, label))
        return np.full_like(x, self.out)


def test_zero_network_gives_c_skip_x():
    """F ≡ 0 leaves D = c_skip·x — the exact denoiser of N(0, σ_data²) data."""
    p = Preconditioning(sigma_data=0.5)
    runner = RecordingRunner(0.0)
    d = make_denoiser(runner, p)
    x = np.random.default_rng(0).standard_normal((3, 1, 4, 4)).astype(np.float32)
    for s in (0.01, 0.5, 20.0):
        out = d(x, s)
        np.testing.assert_allclose(out, p.c_skip(s) * x, rtol=1e-6)
        np.testing.assert_allclose(out, 0.25 / (0.25 + s * s) * x, rtol=1e-6)
        assert out.dtype == np.float32 and out.shape == x.shape


def test_runner_sees_scaled_input_noise_level_and_label():
    p = Preconditioning(sigma_data=0.5)
    runner = RecordingRunner(2.0)
    label = np.array([3, 7], dtype=np.int64)
    d = make_denoiser(runner, p, label=label)
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4))  # float64 in: runner still gets float32
    out = d(x, 1.5)
    (xin, t, lab), = runner.calls
    assert xin.dtype == np.float32 and t.dtype == np.float32 and t.shape == (2,)
    np.testing.assert_allclose(xin, x * p.c_in(1.5), rtol=1e-6)
    np.testing.assert_allclose(t, math.log(1.5) / 4, rtol=1e-6)
    assert lab is label
    np.testing.assert_allclose(out, p.c_skip(1.5) * x + p.c_out(1.5) * 2.0, rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan])
def test_denoiser_rejects_non_positive_sigma(sigma):
    d = make_denoiser(RecordingRunner(), Preconditioning())
    with pytest.raises(InputError, match="sigma"):
        d(np.zeros((1, 1, 2, 2), np.float32), sigma)


def test_dict_round_trip():
    p = Preconditioning(sigma_data=0.7, sigma_min=0.01, sigma_max=40.0)
    d = p.to_dict()
    assert d["kind"] == "edm" and d["sigma_data"] == 0.7
    assert Preconditioning.from_dict(d) == p
    assert Preconditioning.from_dict({"sigma_data": 0.7, "sigma_min": 0.01, "sigma_max": 40.0}) == p
    assert d == p.to_dict()  # from_dict does not mutate its argument
    assert Preconditioning.from_dict({}) == Preconditioning()


def test_from_dict_rejects_unknown_kind_and_fields():
    with pytest.raises(InputError, match="'ve'"):
        Preconditioning.from_dict({"kind": "ve", "sigma_data": 0.5})
    with pytest.raises(InputError, match="VP σ table"):  # a VP preconditioning needs its scheduler's table
        Preconditioning.from_dict({"kind": "vp", "sigma_data": 0.5})
    with pytest.raises(InputError, match="sigma_dta"):
        Preconditioning.from_dict({"kind": "edm", "sigma_dta": 0.5})


@pytest.mark.parametrize("kw", [{"sigma_data": 0.0}, {"sigma_data": -1.0}, {"sigma_min": 0.0},
                                {"sigma_min": 5.0, "sigma_max": 1.0}, {"sigma_max": math.inf},
                                {"sigma_data": math.nan}])
def test_rejects_bad_parameters(kw):
    with pytest.raises(InputError, match="sigma"):
        Preconditioning(**kw)
    with pytest.raises(InputError):
        Preconditioning.from_dict({"kind": "edm", **kw})
