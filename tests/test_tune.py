"""σ-schedule search: what it tries, what it keeps, and that the written schedule is what sampling then uses."""

import pytest

from edgediff.errors import InputError
from edgediff.measure import tune
from edgediff.models import checkpoint
from edgediff.sampling import generate
from edgediff.sampling.schedules import schedule


def test_greedy_search_keeps_the_best_tried_schedule_and_writes_it(small_model_dir):
    t = tune.tune_sigmas(small_model_dir, steps=2, n=16, grid=3, refine=2, progress=False)
    assert len(t.tried) == 3 + 2
    assert t.start == tuple(schedule("dpmpp_2m", 2))
    best_tried = min(t.tried, key=lambda r: r[1])[0]
    assert t.best == best_tried and t.best[0] == t.start[0] and t.best[-1] == 0.0
    assert t.start[0] > t.best[1] > 0

    tune.write(small_model_dir, t)
    defaults = checkpoint.load(small_model_dir, weights=False).sampler_defaults
    assert defaults["sigmas"] == list(t.best) and defaults["steps"] == 2
    assert generate.recommended(defaults).sigmas == t.best


def test_one_step_has_nothing_to_tune_and_the_report_seed_is_not_searched(small_model_dir):
    with pytest.raises(InputError, match="intermediate"):
        tune.tune_sigmas(small_model_dir, steps=1, progress=False)
    with pytest.raises(InputError, match="report seed"):
        tune.tune_sigmas(small_model_dir, steps=2, search_seed=0, seeds=2, report_seed=1, progress=False)
