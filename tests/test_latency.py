import time

import pytest

from edgediff.errors import InputError
from edgediff.measure.latency import Latency, measure


def test_measure_counts_calls_and_reports_order_statistics():
    calls = []
    lat = measure(lambda: calls.append(time.sleep(0.001)), warmup=2, iters=5)
    assert len(calls) == 7 and len(lat.samples) == 5
    assert lat.min <= lat.p50 <= lat.p90 <= lat.p99 and lat.p50 >= 1.0


def test_min_seconds_extends_the_run():
    lat = measure(lambda: time.sleep(0.002), warmup=0, iters=1, min_seconds=0.03)
    assert len(lat.samples) >= 5


def test_statistics_and_bad_arguments():
    lat = Latency((1.0, 2.0, 3.0, 10.0))
    assert lat.p50 == 2.5 and lat.mean == 4.0 and lat.min == 1.0 and lat.to_dict()["n"] == 4
    with pytest.raises(InputError):
        measure(lambda: None, iters=0)


def test_host_facts_cpu_time_and_peak_rss():
    from edgediff.measure.latency import cpu_seconds, host, peak_rss_mb

    h = host()
    assert h["cores"] >= 1 and {"cpu", "os", "python", "torch", "numpy"} <= set(h)
    t0 = cpu_seconds()
    sum(i * i for i in range(200_000))
    assert cpu_seconds() > t0 and 10 < peak_rss_mb() < 100_000
