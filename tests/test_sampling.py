"""Samplers against two oracles (design §2): the closed-form PF-ODE of Gaussian data, and diffusers' schedulers."""

import math

import numpy as np
import pytest
import torch

from edgediff.errors import InputError
from edgediff.sampling.samplers import (
    SAMPLERS,
    get_sampler,
    sample,
    sample_consistency,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    sample_lcm,
    sample_tcd,
)
from edgediff.sampling.schedules import karras_sigmas, schedule

MU, S = 0.3, 0.5  # data ~ N(MU, S²) per pixel
SHAPE = (64, 1, 4, 4)


def gaussian_denoiser(mu=MU, s=S):
    """The exact denoiser of N(mu, s²) data: E[y | y + σn = x] (works on numpy and torch alike)."""

    def denoise(x, sigma):
        return mu + (x - mu) * (s * s / (s * s + sigma * sigma))

    return denoise


def exact_ode(x_T, sigma, *, sigma_max, mu=MU, s=S):
    """Closed-form probability-flow ODE solution from (x_T, sigma_max) down to sigma."""
    return mu + (x_T - mu) * (math.sqrt(s * s + sigma * sigma) / math.sqrt(s * s + sigma_max * sigma_max))


def nonlinear_denoiser(x, sigma):
    """A non-trivial model function in σ-space: the Gaussian denoiser plus a σ-dependent tanh term."""
    return MU + (x - MU) * (S * S / (S * S + sigma * sigma)) + np.tanh(x) * (0.2 * sigma / (1.0 + sigma))


def _fitted_order(fn, steps):
    """Least-squares slope of -log(error) vs log(N) for the full Karras grid ending with the jump to σ=0."""
    sigma_max, sigma_min = 80.0, 0.002
    x_T = np.random.default_rng(0).standard_normal(SHAPE) * sigma_max
    reference = exact_ode(x_T, 0.0, sigma_max=sigma_max)
    errors = []
    for n in steps:
        sigmas = karras_sigmas(n, sigma_min=sigma_min, sigma_max=sigma_max)
        errors.append(np.abs(fn(gaussian_denoiser(), x_T.copy(), sigmas) - reference).max())
    assert all(e1 > e2 for e1, e2 in zip(errors, errors[1:], strict=False)), errors
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0], errors


# The reference is the exact ODE solution at σ=0 from x_T. The samplers reach σ=0 by one last step from σ_min:
# Euler/Heun/DPM++ all land on D(x, σ_min) there, which differs from the exact flow by a factor
# s/√(s²+σ_min²) - s²/(s²+σ_min²) ≈ σ_min²/(2s²) ≈ 8e-6 — far below the smallest error measured here (~2e-3 at
# N=128), so the final jump does not spoil the order (measured: the error at the last positive σ is the same to
# 3 digits). N starts at 16: at N=8 the multistep DPM++ is still pre-asymptotic (8→16 slope ≈ 0.9).
# Measured orders (N = 16, 32, 64, 128): euler 0.99, heun 2.12, dpmpp_2m 2.16.
@pytest.mark.parametrize(("fn", "lo", "hi"), [(sample_euler, 0.7, 1.3), (sample_dpmpp_2m, 1.7, 2.3),
                                              (sample_heun, 1.7, 2.5)])
def test_convergence_order_on_gaussian_data(fn, lo, hi):
    order, errors = _fitted_order(fn, [16, 32, 64, 128])
    assert lo <= order <= hi, (fn.__name__, order, errors)


def test_second_order_samplers_beat_euler_at_equal_denoiser_calls():
    sigma_max = 80.0
    x_T = np.random.default_rng(1).standard_normal(SHAPE) * sigma_max
    reference = exact_ode(x_T, 0.0, sigma_max=sigma_max)
    err = {name: np.abs(SAMPLERS[name](gaussian_denoiser(), x_T, karras_sigmas(64, sigma_max=sigma_max))
                        - reference).max() for name in ("euler", "dpmpp_2m")}
    assert err["dpmpp_2m"] < err["euler"] / 10, err


def test_intermediate_states_follow_the_ode():
    """Every x handed to the callback lies on the exact ODE trajectory (up to the discretisation error)."""
    sigma_max = 80.0
    x_T = np.random.default_rng(2).standard_normal(SHAPE) * sigma_max
    seen = []
    sample_dpmpp_2m(gaussian_denoiser(), x_T, karras_sigmas(128, sigma_max=sigma_max),
                    callback=lambda i, s, x, x0: seen.append((s, x)))
    assert len(seen) == 128
    for s, x in seen:
        np.testing.assert_allclose(x, exact_ode(x_T, s, sigma_max=sigma_max), atol=5e-3 * max(1.0, s))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_point_mass_data_gives_mu_exactly(name, steps):
    sigmas = karras_sigmas(steps, sigma_max=80.0)
    rng = np.random.default_rng(3)
    x_T = rng.standard_normal(SHAPE) * sigmas[0]
    out = SAMPLERS[name](gaussian_denoiser(s=0.0), x_T, sigmas, noise=rng.standard_normal)
    np.testing.assert_allclose(out, MU, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- diffusers oracle
def _vp_model(x_t, sigma):
    """diffusers' eps-prediction model equivalent to `nonlinear_denoiser` at noise level σ (VP ↔ σ-space)."""
    y = x_t.numpy() * math.sqrt(sigma * sigma + 1.0)  # y = x_t/√ᾱ with ᾱ = 1/(1+σ²)
    return torch.from_numpy((y - nonlinear_denoiser(y, sigma)) / sigma)


@pytest.mark.parametrize("betas", [{}, {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}])
@pytest.mark.parametrize("steps", [10, 17])
def test_euler_equals_diffusers_ddim(betas, steps):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, set_alpha_to_one=True, clip_sample=False, **betas)
    scheduler.set_timesteps(steps)
    alphas_cumprod = scheduler.alphas_cumprod.double().numpy()
    noise = np.random.default_rng(4).standard_normal((4, 1, 8, 8))

    x_t, sigmas = torch.from_numpy(noise), []
    for t in scheduler.timesteps:
        a = float(alphas_cumprod[int(t)])
        sigmas.append(math.sqrt((1 - a) / a))
        x_t = scheduler.step(_vp_model(x_t, sigmas[-1]), t, x_t, eta=0.0).prev_sample
    sigmas.append(0.0)  # set_alpha_to_one: the last step goes to ᾱ = 1

    ours = sample_euler(nonlinear_denoiser, noise * math.sqrt(sigmas[0] ** 2 + 1), sigmas)
    assert len(sigmas) == steps + 1
    np.testing.assert_allclose(ours, x_t.numpy(), rtol=0, atol=1e-5)
    # The comparison has teeth: a different solver on the same σ grid is far off.
    assert np.abs(sample_heun(nonlinear_denoiser, noise * math.sqrt(sigmas[0] ** 2 + 1), sigmas)
                  - x_t.numpy()).max() > 1e-3


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside diffusers
@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m_equals_diffusers_dpmsolver(steps):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
        use_karras_sigmas=True, final_sigmas_type="zero")
    scheduler.set_timesteps(steps)
    noise = np.random.default_rng(5).standard_normal((4, 1, 8, 8))

    x_t = torch.from_numpy(noise)
    for i, t in enumerate(scheduler.timesteps):
        # diffusers rounds Karras timesteps to integers: the σ it integrates with is scheduler.sigmas[step_index].
        assert scheduler.step_index in (None, i)
        x_t = scheduler.step(_vp_model(x_t, float(scheduler.sigmas[i])), t, x_t).prev_sample

    sigmas = [float(s) for s in scheduler.sigmas]
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0.0
    ours = sample_dpmpp_2m(nonlinear_denoiser, noise * math.sqrt(sigmas[0] ** 2 + 1), sigmas)
    np.testing.assert_allclose(ours, x_t.numpy(), rtol=0, atol=1e-5)
    assert np.abs(sample_euler(nonlinear_denoiser, noise * math.sqrt(sigmas[0] ** 2 + 1), sigmas)
                  - x_t.numpy()).max() > 1e-3


# ------------------------------------------------------------------------------------- determinism, callbacks, torch
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sample_is_deterministic_per_seed(name):
    a = sample(nonlinear_denoiser, (2, 1, 4, 4), sampler=name, steps=5, rng=np.random.default_rng(0))
    b = sample(nonlinear_denoiser, (2, 1, 4, 4), sampler=name, steps=5, rng=np.random.default_rng(0))
    c = sample(nonlinear_denoiser, (2, 1, 4, 4), sampler=name, steps=5, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (2, 1, 4, 4)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_once_per_step(name):
    calls = []

    def denoiser(x, sigma):
        return nonlinear_denoiser(x, sigma)

    out = sample(denoiser, (2, 1, 4, 4), sampler=name, steps=6, rng=np.random.default_rng(0), sigma_max=20.0,
                 callback=lambda i, s, x, x0: calls.append((i, s, x.copy(), x0.copy())))
    sigmas = schedule(name, 6, sigma_max=20.0)
    assert [c[0] for c in calls] == list(range(6))
    assert [c[1] for c in calls] == sigmas[:-1]
    for _, s, x, x0 in calls:
        assert x.shape == x0.shape == (2, 1, 4, 4)
        np.testing.assert_allclose(x0, nonlinear_denoiser(x, s), rtol=1e-6, atol=1e-6)
    # x_T ~ N(0, σ_max²) and the last step lands on its own x0 estimate.
    assert 10.0 < calls[0][2].std() < 30.0
    np.testing.assert_allclose(out, calls[-1][3], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_run_on_torch_tensors(name):
    sigmas = karras_sigmas(6, sigma_max=80.0)
    x_np = np.random.default_rng(6).standard_normal((2, 1, 4, 4)) * sigmas[0]
    z = np.random.default_rng(7).standard_normal((5, 2, 1, 4, 4))
    it_np, it_t = iter(z), iter(torch.from_numpy(z))

    def denoiser_torch(x, sigma):
        assert isinstance(x, torch.Tensor)
        return MU + (x - MU) * (S * S / (S * S + sigma * sigma)) + torch.tanh(x) * (0.2 * sigma / (1.0 + sigma))

    out_np = SAMPLERS[name](nonlinear_denoiser, x_np, sigmas, noise=lambda shape: next(it_np))
    out_t = SAMPLERS[name](denoiser_torch, torch.from_numpy(x_np), sigmas, noise=lambda shape: next(it_t))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_allclose(out_t.numpy(), out_np, rtol=1e-12, atol=1e-12)


def test_consistency_needs_noise_for_several_steps():
    x = np.ones((1, 1, 2, 2))
    with pytest.raises(InputError, match="noise"):
        sample_consistency(nonlinear_denoiser, x, karras_sigmas(2))
    # One step needs no noise: it is a single denoiser call.
    np.testing.assert_array_equal(sample_consistency(nonlinear_denoiser, x, karras_sigmas(1)),
                                  nonlinear_denoiser(x, 80.0))


def test_consistency_renoises_to_the_next_sigma():
    """Song et al. 2023 Alg. 1: x_{n+1} = x0 + √(σ_{n+1}² − σ_min²)·z, fed to the next denoiser call."""
    sigmas = [10.0, 3.0, 0.0]
    seen = []
    z = np.full((1, 1, 2, 2), 2.0)
    sample_consistency(lambda x, s: x * 0 + 0.5, np.zeros((1, 1, 2, 2)), sigmas, noise=lambda shape: z,
                       callback=lambda i, s, x, x0: seen.append(x), sigma_min=0.002)
    np.testing.assert_allclose(seen[1], 0.5 + 2.0 * math.sqrt(9.0 - 0.002**2))


def test_tcd_spans_consistency_sampling_and_ddim():
    """TCD's γ (Zheng et al. 2024): γ = 1 re-noises with fresh noise (LCM), γ = 0 is DDIM over the same σ levels,
    between them x goes along the predicted noise to (1 − γ)σ and is re-noised from there."""
    sigmas = schedule("tcd", 4, sigma_max=80.0)
    assert sigmas == schedule("consistency", 4, sigma_max=80.0)
    x_T = np.random.default_rng(0).standard_normal(SHAPE) * sigmas[0]
    z = np.random.default_rng(1).standard_normal((3, *SHAPE))

    def run(fn, **kw):
        it = iter(z)
        return fn(nonlinear_denoiser, x_T, sigmas, noise=lambda shape: next(it), **kw)

    np.testing.assert_allclose(run(sample_tcd, gamma=1.0), run(sample_lcm), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run(sample_tcd, gamma=0.0), run(sample_euler), rtol=1e-12, atol=1e-12)
    mid = run(sample_tcd, gamma=0.5)
    assert not np.allclose(mid, run(sample_euler)) and not np.allclose(mid, run(sample_lcm))
    seen = []  # one step by hand: σ' = 0.5·3, x = x0 + (x − x0)·σ'/10 + √(3² − σ'²)·z
    sample_tcd(lambda x, s: x * 0 + 0.5, np.ones((1, 1, 2, 2)), [10.0, 3.0, 0.0], gamma=0.5,
               noise=lambda shape: np.full(shape, 2.0), callback=lambda i, s, x, x0: seen.append(x))
    np.testing.assert_allclose(seen[1], 0.5 + 0.5 * 1.5 / 10.0 + 2.0 * math.sqrt(9.0 - 1.5**2))


@pytest.mark.parametrize("gamma", [-0.1, 1.5])
def test_tcd_gamma_outside_0_1_is_refused(gamma):
    with pytest.raises(InputError, match="gamma"):
        sample_tcd(nonlinear_denoiser, np.ones((1, 1, 2, 2)), [10.0, 3.0, 0.0], gamma=gamma,
                   noise=np.random.default_rng(0).standard_normal)


def test_gamma_belongs_to_the_tcd_sampler():
    from edgediff.format.configs import Request
    from edgediff.sampling.generate import recommended

    with pytest.raises(InputError, match="tcd"):
        Request(sampler="consistency", gamma=0.2)
    assert Request(sampler="tcd", gamma=0.0).gamma == 0.0
    defaults = {"sampler": "tcd", "steps": 2, "guidance": 2.0, "gamma": 0.0}
    assert recommended(defaults, n=4).gamma == 0.0
    assert recommended(defaults, sampler="consistency").gamma is None  # γ goes with the recommended sampler


# --------------------------------------------------------------------------------------------- σ grid and names
def test_karras_sigmas_shape_and_endpoints():
    for n in (2, 3, 10, 50):
        sig = karras_sigmas(n, sigma_min=0.01, sigma_max=50.0, rho=7.0)
        assert len(sig) == n + 1 and sig[-1] == 0.0
        assert all(a > b for a, b in zip(sig, sig[1:], strict=False))
        assert sig[0] == pytest.approx(50.0, rel=1e-12) and sig[-2] == pytest.approx(0.01, rel=1e-12)
        assert all(isinstance(s, float) for s in sig)
    # rho=1 is a linear grid
    np.testing.assert_allclose(karras_sigmas(5, sigma_min=1.0, sigma_max=5.0, rho=1.0), [5, 4, 3, 2, 1, 0])
    assert karras_sigmas(1, sigma_min=0.01, sigma_max=50.0) == [50.0, 0.0]


def test_karras_sigmas_matches_edm_eq5():
    n, smin, smax, rho = 18, 0.002, 80.0, 7.0
    i = np.arange(n)
    expected = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    np.testing.assert_allclose(karras_sigmas(n, sigma_min=smin, sigma_max=smax, rho=rho)[:-1], expected, rtol=1e-12)


@pytest.mark.parametrize("n", [0, -3, 2.5, "4", None])
def test_karras_sigmas_rejects_bad_steps(n):
    with pytest.raises(InputError, match="steps"):
        karras_sigmas(n)


@pytest.mark.parametrize(("kw"), [{"sigma_min": 0.0}, {"sigma_min": 5.0, "sigma_max": 1.0}, {"sigma_max": math.nan},
                                  {"rho": 0.0}, {"rho": -1.0}])
def test_karras_sigmas_rejects_bad_range(kw):
    with pytest.raises(InputError):
        karras_sigmas(4, **kw)


def test_consistency_schedule_skips_sigma_min():
    """Denoising at σ_min is the identity for a consistency model: steps go σ_max → … → 0 without it."""
    assert schedule("consistency", 1) == [80.0, 0.0]
    two = schedule("consistency", 2)
    assert len(two) == 3 and 0.5 < two[1] < 10 and two[2] == 0.0
    assert schedule("consistency", 4)[:-1] == karras_sigmas(5)[:-2]
    assert schedule("euler", 4) == karras_sigmas(4)


def test_an_explicit_schedule_replaces_the_formula_and_is_what_the_sampler_visits():
    assert schedule("consistency", 2, sigmas=[80, 0.8, 0]) == [80.0, 0.8, 0.0]
    seen = []
    sample(lambda x, s: 0 * x, (1, 2), sampler="consistency", steps=2, rng=np.random.default_rng(0),
           sigmas=(80.0, 0.8, 0.0), callback=lambda i, s, x, x0: seen.append(s))
    assert seen == [80.0, 0.8]


@pytest.mark.parametrize("bad", [[80, 0.8], [80, 0.8, 0.1], [80, 90, 0], [80, math.nan, 0], [80, 0.8, 0.8, 0],
                                 "80,0.8,0"])
def test_bad_explicit_schedules_are_refused(bad):
    with pytest.raises(InputError, match="sigmas"):
        schedule("consistency", 2, sigmas=bad)


def test_get_sampler():
    assert get_sampler("dpmpp_2m") is sample_dpmpp_2m
    with pytest.raises(InputError, match="nope") as e:
        get_sampler("nope")
    for name in ("euler", "heun", "dpmpp_2m", "consistency"):
        assert name in str(e.value)
    with pytest.raises(InputError):
        sample(nonlinear_denoiser, (1, 1, 2, 2), sampler="nope", rng=np.random.default_rng(0))


def test_every_sampler_name_the_artifact_format_allows_has_a_sampler():
    """format.schema.SAMPLER_NAMES (what sampler_defaults may name in artifact.json) == the sampler functions."""
    from edgediff.format.schema import SAMPLER_NAMES

    assert set(SAMPLER_NAMES) == set(SAMPLERS)
