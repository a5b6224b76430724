"""Platform files: loading, clock snapping, power calibration against the reference, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twill_ros.core.platform import PlatformError, load_platform
from twill_ros.resources import find_resource

MHZ = 1_000_000


@pytest.fixture(scope="module")
def nx16():
    return load_platform("orin_nx_16gb")


@pytest.fixture(scope="module")
def nx8():
    return load_platform("orin_nx_8gb")


def test_bare_name_and_path_resolve_to_the_same_file(nx16):
    path = find_resource("config/platforms/orin_nx_16gb.yaml")
    assert load_platform(str(path)) == nx16
    assert nx16.path == str(path)


def test_orin_nx_16gb_units_and_tables(nx16):
    assert nx16.unit_names == ("gpu", "dla0", "dla1", "cpu_a", "cpu_b")
    gpu = nx16.unit("gpu")
    assert gpu.kind == "gpu" and gpu.sharing == "processor_shared"
    assert gpu.frequencies_hz == tuple(f * MHZ for f in (306, 408, 510, 612, 714, 816, 918))
    cpu_a, cpu_b = nx16.unit("cpu_a"), nx16.unit("cpu_b")
    assert cpu_a.cores == (0, 1, 2, 3) and cpu_b.cores == (4, 5, 6, 7)
    assert cpu_a.max_frequency_hz == 1_984_000_000 and len(cpu_a.frequencies_hz) == 26
    assert nx16.unit("dla0").max_frequency_hz == 614_400_000
    assert nx16.dvfs_transition_s == pytest.approx(0.005)
    assert nx16.power_sample_period_s == pytest.approx(0.010)


def test_orin_nx_8gb_has_six_cores_one_dla_and_a_765mhz_gpu(nx8):
    assert nx8.unit_names == ("gpu", "dla0", "cpu_a", "cpu_b")
    assert nx8.unit("cpu_b").cores == (4, 5)
    assert nx8.unit("gpu").max_frequency_hz == 765 * MHZ
    assert nx8.unit("cpu_b").speed_scale > 1.0  # two cores run a 4-thread job slower
    assert [m.name for m in nx8.nvpmodel] == ["10W", "15W", "20W", "MAXN"]


def test_snap_picks_the_table_entry_at_or_below_else_the_minimum(nx16):
    gpu = nx16.unit("gpu")
    assert gpu.snap(650 * MHZ) == 612 * MHZ
    assert gpu.snap(612 * MHZ) == 612 * MHZ
    assert gpu.snap(10 * MHZ) == 306 * MHZ
    assert gpu.snap(2_000 * MHZ) == 918 * MHZ


def test_idle_floor_matches_the_reference_idle_vdd_in(nx16):
    # orin_nx_measurements.md §3: 4.6 W idle VDD_IN, GPU at 306 MHz
    assert nx16.floor_power_w == pytest.approx(4.6, abs=0.05)


def _module_power(platform, load):
    """Module power for {unit: (freq_hz, utilization)}; absent units idle."""
    total = platform.idle_power_w
    for unit in platform.units:
        freq, util = load.get(unit.name, (unit.min_frequency_hz, 0.0))
        total += unit.power.power_w(freq, unit.max_frequency_hz, util)
    return total


def test_all_units_busy_at_max_clocks_exceeds_the_25w_hardware_limit(nx16):
    full = {u.name: (u.max_frequency_hz, 1.0) for u in nx16.units}
    assert _module_power(nx16, full) > 25.1  # the real module would over-current throttle


def test_power_model_reproduces_mlperf_maxq_multistream(nx16):
    # MLPerf v3.1 MaxQ ResNet-50 MultiStream: GPU 624.75 MHz, CPU 576 MHz, 11.6 W wall avg
    load = {"gpu": (nx16.unit("gpu").snap(624_750_000), 0.95), "cpu_a": (576 * MHZ, 0.3)}
    assert 10.0 < _module_power(nx16, load) < 12.7


def test_power_rises_with_frequency_and_utilization(nx16):
    power = nx16.unit("gpu").power
    f_max = 918 * MHZ
    assert power.power_w(f_max, f_max, 0.0) == pytest.approx(power.static_w)
    assert power.power_w(306 * MHZ, f_max, 1.0) < power.power_w(612 * MHZ, f_max, 1.0)
    assert power.power_w(f_max, f_max, 0.5) < power.power_w(f_max, f_max, 1.0)


def test_nvpmodel_caps_by_unit_name_then_kind(nx16):
    ten = nx16.nvpmodel_mode("10W")
    assert ten.cap_hz(nx16.unit("dla0")) == 153_600_000
    assert ten.cap_hz(nx16.unit("dla1")) == 115_200_000
    assert ten.cap_hz(nx16.unit("cpu_b")) == 1_190_400_000
    assert nx16.nvpmodel_mode("25W").cap_hz(nx16.unit("gpu")) == 408 * MHZ
    assert nx16.nvpmodel_mode("MAXN").cap_hz(nx16.unit("gpu")) == 918 * MHZ


def test_interference_from_the_reference_report(nx16):
    factors = {(i.victim, i.aggressor): i.factor for i in nx16.interference}
    assert 51 / 45 <= factors[("gpu", "dla")] <= 59 / 45
    assert factors[("dla", "gpu")] == pytest.approx(21 / 17, abs=0.01)


def test_unknown_unit_lookup_names_the_platform(nx16):
    with pytest.raises(KeyError, match="orin_nx_16gb.*npu"):
        nx16.unit("npu")


def test_missing_platform_name_raises_file_not_found():
    with pytest.raises(FileNotFoundError, match="no_such_board"):
        load_platform("no_such_board")


# ------------------------------------------------------------------ validation errors
def _broken(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(find_resource("config/platforms/orin_nx_16gb.yaml").read_text())
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "entry", "field"),
    [
        (
            lambda d: d["units"][0].update(frequencies_mhz=[918, 306]),
            "unit 'gpu'",
            "frequencies_mhz",
        ),
        (lambda d: d["units"][1].update(kind="npu"), "unit 'dla0'", "kind"),
        (lambda d: d["units"][3].update(cores=[]), "unit 'cpu_a'", "cores"),
        (lambda d: d["units"][0]["power"].pop("exponent"), "unit 'gpu'", "exponent"),
        (lambda d: d["units"][0]["power"].update(static_w=-1), "unit 'gpu'", "static_w"),
        (lambda d: d.pop("idle_power_w"), "top level", "idle_power_w"),
        (lambda d: d["units"][0].update(speed=2), "unit 'gpu'", "speed"),
        (lambda d: d["interference"][0].update(factor=0.5), "interference 'gpu'", "factor"),
        (
            lambda d: d["nvpmodel"][0]["caps_mhz"].update(npu=100),
            "nvpmodel mode '10W'",
            "caps_mhz.npu",
        ),
    ],
)
def test_validation_errors_name_file_entry_and_field(tmp_path, mutate, entry, field):
    path = _broken(tmp_path, mutate)
    with pytest.raises(PlatformError) as info:
        load_platform(str(path))
    message = str(info.value)
    assert str(path) in message
    assert entry in message
    assert f"field '{field}'" in message


def test_duplicate_unit_names_are_rejected(tmp_path):
    path = _broken(tmp_path, lambda d: d["units"][2].update(name="dla0"))
    with pytest.raises(PlatformError, match="duplicate unit name 'dla0'"):
        load_platform(str(path))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("units: [unclosed\n")
    with pytest.raises(PlatformError, match="bad.yaml: invalid YAML"):
        load_platform(str(path))
