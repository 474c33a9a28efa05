"""The fleet-scale rollout model (bench/fleet_model.py): pure logic, no lab."""

import importlib.util
import math
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("fleet_model", ROOT / "bench" / "fleet_model.py")
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)

CAL = fm.load_calibration()
P = fm.calibrate(CAL)


def test_push_egress_is_every_hosts_bytes_plus_control():
    for n in (1, 7, 1_000, 10_000):
        assert fm.simulate("push", n, P).egress_bytes == pytest.approx(
            n * (P.bytes_per_host + P.control_bytes))


def test_pull_egress_is_control_only_whatever_the_bytes_per_host():
    small, big = replace(P, bytes_per_host=1 << 20), replace(P, bytes_per_host=7 << 30)
    for n in (1, 100, 10_000):
        egress = fm.simulate("pull", n, small).egress_bytes
        assert egress == fm.simulate("pull", n, big).egress_bytes == pytest.approx(
            n * P.control_bytes)
        assert egress < fm.simulate("push", n, small).egress_bytes


@pytest.mark.parametrize("params", [P, replace(P, batch=7), replace(P, forks=3),
                                    fm.fit_lab(CAL)], ids=["default", "batch7", "forks3", "lab"])
@pytest.mark.parametrize("mode", ["push", "pull"])
def test_rollout_time_never_falls_as_the_fleet_grows(mode, params):
    times = [fm.simulate(mode, n, params).seconds for n in list(range(1, 301)) + [1_000, 10_000]]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(times, times[1:])), times  # float sums
    assert times[-1] > times[0]


def test_a_host_past_forks_waits_for_the_next_wave():
    for mode in ("push", "pull"):
        full = fm.simulate(mode, P.forks, P).seconds
        alone = fm.simulate(mode, 1, P).seconds
        assert fm.simulate(mode, P.forks + 1, P).seconds == pytest.approx(full + alone)


def test_batches_wait_for_each_other():
    p = replace(P, batch=10)
    one_batch = fm.simulate("pull", 10, p).seconds
    assert fm.simulate("pull", 100, p).seconds == pytest.approx(10 * one_batch)
    assert fm.simulate("pull", 100, P).seconds < 10 * one_batch


def test_push_stops_scaling_at_a_smaller_fleet_than_pull():
    push, pull = fm.stop_scaling("push", P), fm.stop_scaling("pull", P)
    assert push is not None and pull is not None
    assert push[0] < pull[0]
    assert push[1] in ("controller uplink", "controller CPU")
    assert pull[1] == "cache"
    # From there on, ten times the hosts take about ten times as long.
    for mode, (n, _) in (("push", push), ("pull", pull)):
        big = max(n, P.forks) * 10
        ratio = fm.simulate(mode, 10 * big, P).seconds / fm.simulate(mode, big, P).seconds
        assert ratio == pytest.approx(10, rel=0.05)


def test_with_a_huge_controller_push_is_bound_by_the_host_downlink():
    # (hosts that unpack faster than their downlink, whatever the lab measured)
    p = replace(P, uplink=1e15, controller_cores=1_000_000, push_rate=1e15,
                unpack_rate=10 * P.downlink)
    for n in (1, 50, 10_000):
        assert fm.simulate("push", n, p).bottleneck == "host downlink"
    assert fm.stop_scaling("push", p) is None


def test_tiny_closures_are_bound_by_the_fixed_time():
    p = replace(P, bytes_per_host=1_000)
    assert fm.simulate("push", 1, p).bottleneck == "per-host fixed time"
    assert fm.simulate("pull", 1, p).seconds == pytest.approx(P.fixed, rel=0.01)


def test_the_calibration_loads_and_the_model_reproduces_the_lab_within_25_percent():
    assert CAL["hosts"] >= 2 and CAL["bytes_per_host"] > 0
    check = fm.lab_check(CAL, fm.fit_lab(CAL))
    assert set(check) == {(m, k) for m in ("push", "pull") for k in ("one_host_s", "fleet_s")}
    for (mode, key), (model, measured, err) in check.items():
        assert measured == CAL[mode][key]
        assert abs(err) <= 25, (mode, key, model, measured)
    for name in fm.CALIBRATED:
        value = getattr(P, name)
        assert 0 < value < math.inf, (name, value)


def test_the_fit_recovers_known_lab_costs():
    truth = fm.Params(bytes_per_host=17e6, control_bytes=10e3, uplink=math.inf,
                      cache=math.inf, downlink=math.inf, forks=6, controller_cores=2,
                      push_rate=80e6, cpu_per_host=0.6, unpack_rate=200e6, fixed=0.8,
                      shared_cpu=True)
    cal = {"measured": "synthetic", "hosts": 6, "forks": 6, "controller_cores": 2,
           "bytes_per_host": 17e6}
    for mode in ("push", "pull"):
        cal[mode] = {"one_host_s": fm.simulate(mode, 1, truth).seconds,
                     "fleet_s": fm.simulate(mode, 6, truth).seconds,
                     "controller_bytes": fm.simulate(mode, 6, truth).egress_bytes}
    lab = fm.fit_lab(cal)
    for name in ("push_rate", "cpu_per_host", "unpack_rate", "fixed", "control_bytes"):
        assert getattr(lab, name) == pytest.approx(getattr(truth, name), rel=0.01), name


def test_the_png_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "fleet.png"
    fm.plot(P, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


def test_the_doc_section_is_rewritten_between_its_markers(tmp_path):
    doc = tmp_path / "fleet.md"
    doc.write_text(f"before\n{fm.BEGIN}\nSTALE\n{fm.END}\nafter\n")
    text = fm.write_outputs(CAL, png=None, doc=doc)
    written = doc.read_text()
    assert written.startswith("before\n") and written.endswith(f"{fm.END}\nafter\n")
    assert "STALE" not in written and text in written
    assert "| 10,000 |" in text and "stops scaling" in text


def test_the_held_out_lab_run_is_predicted_within_25_percent():
    """6 hosts three at a time: a run the fit never saw (make bench measures it)."""
    checked = fm.holdout_check(CAL, fm.fit_lab(CAL))
    assert set(checked) == {"push", "pull"}
    for mode, (model, measured, err) in checked.items():
        assert abs(err) <= 25, (mode, model, measured)
