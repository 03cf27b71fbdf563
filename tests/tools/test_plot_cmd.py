"""``telehub plot``: the bundled 545 s drive, decoded by the agent's decoder and drawn.

The data step (:func:`collect`) is checked against the recording's published
reference values; the drawing step against the PNG's header (a valid PNG of
the size the figure geometry promises). Bad input fails before any decoding.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tools.demo import demo_data
from tools.plot_cmd import (
    AXIS_HEIGHT_IN,
    DPI,
    WIDTH_IN,
    PlotError,
    Series,
    collect,
    draw,
    main,
    resolve,
)
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder

DRIVE = demo_data() / "drive-gnss"
LOG = DRIVE / "drive_545s.MF4"
GPS_DBC = DRIVE / "canmod-gps.dbc"
CANTOOLS_DBC = Path(__file__).parent.parent / "data" / "cantools-dbc"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def expected_size(subplots: int) -> tuple[int, int]:
    return round(WIDTH_IN * DPI), round(AXIS_HEIGHT_IN * subplots * DPI)


@pytest.fixture(scope="module")
def drive_series() -> list[Series]:
    return collect(LOG, [DbcSpec(GPS_DBC, bus="gnss")], ["Speed", "Altitude", "Latitude"])


def test_collect_gives_the_reference_counts_and_values(drive_series: list[Series]) -> None:
    speed, altitude, latitude = drive_series
    assert [s.name for s in drive_series] == [
        "gnss_speed.Speed",
        "gnss_altitude.Altitude",
        "gnss_pos.Latitude",
    ]
    # The recording's reference values (tools/demo_data/README.md).
    assert len(speed) == 510
    assert speed.values.mean() == pytest.approx(9.499214, abs=5e-7)
    assert speed.values.max() == pytest.approx(20.529)
    assert len(altitude) == 510
    assert altitude.values.mean() == pytest.approx(-1083.776078, abs=5e-7)
    assert latitude.values.mean() == pytest.approx(56.105229, abs=5e-7)
    assert (speed.spec.unit, altitude.spec.unit, latitude.spec.unit) == ("m/s", "m", "deg")
    for s in drive_series:
        assert len(s.times) == len(s.values)
        assert s.times[0] >= 0  # seconds from the log's first frame
        assert s.times[-1] <= 545
        assert np.all(np.diff(s.times) >= 0)


def test_collect_keeps_only_the_window() -> None:
    (speed,) = collect(LOG, [DbcSpec(GPS_DBC)], ["gnss_speed.Speed"], start=100.0, end=200.0)
    assert 0 < len(speed) < 510
    assert speed.times.min() >= 100.0
    assert speed.times.max() <= 200.0
    # About one Speed sample per second in this recording.
    assert 90 <= len(speed) <= 110


def test_draw_writes_a_png_with_one_subplot_per_unit(
    drive_series: list[Series], tmp_path: Path
) -> None:
    out = tmp_path / "plot.png"
    size = draw(drive_series, out, title="drive")
    assert size == expected_size(3) == png_size(out)


def test_signals_with_one_unit_share_a_subplot(drive_series: list[Series], tmp_path: Path) -> None:
    (speed,) = collect(LOG, [DbcSpec(GPS_DBC)], ["SpeedAccuracy"], end=60.0)
    assert speed.spec.unit == "m/s"
    out = tmp_path / "shared.png"
    assert draw([drive_series[0], speed], out, title="speeds") == expected_size(1)
    assert png_size(out) == expected_size(1)


def test_cli_plots_speed_altitude_and_latitude(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "drive.png"
    argv = [str(LOG), "--dbc", f"{GPS_DBC}:gnss", "-o", str(out), "--title", "545 s drive"]
    for name in ("Speed", "Altitude", "gnss_pos.Latitude"):
        argv += ["--signal", name]
    assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr == ""
    assert "gnss_speed.Speed: n=510" in stdout
    assert "gnss_altitude.Altitude: n=510" in stdout
    assert "m/s" in stdout
    assert f"wrote {out} (1200x900 px)" in stdout
    assert png_size(out) == expected_size(3)


def test_a_name_in_several_messages_is_ambiguous() -> None:
    catalog = Decoder([DbcSpec(CANTOOLS_DBC / "floating_point.dbc")]).catalog
    owners = sorted(s.message for s in catalog if s.name == "Signal1")
    assert len(owners) == 2
    with pytest.raises(PlotError, match="ambiguous") as exc:
        resolve(catalog, ["Signal1"])
    for owner in owners:
        assert f"{owner}.Signal1" in str(exc.value)
    (chosen,) = resolve(catalog, [f"{owners[1]}.Signal1"])
    assert (chosen.message, chosen.name) == (owners[1], "Signal1")


def test_the_same_file_on_two_buses_needs_the_bus_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.png"
    base = [str(LOG), "--dbc", f"{GPS_DBC}:front", "--dbc", f"{GPS_DBC}:rear", "-o", str(out)]
    assert main([*base, "--signal", "Speed"]) == 1
    err = capsys.readouterr().err
    assert "ambiguous" in err
    assert "front.gnss_speed.Speed" in err
    assert "rear.gnss_speed.Speed" in err
    # The first DBC bound to every channel decodes every frame it knows, so the
    # second one's Speed never appears: an error, not an empty plot.
    assert main([*base, "--signal", "rear.gnss_speed.Speed"]) == 1
    err = capsys.readouterr().err
    assert "never in" in err
    assert "rear.gnss_speed.Speed" in err
    assert not out.exists()


def test_unknown_signal_suggests_close_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(LOG), "--dbc", str(GPS_DBC), "--signal", "Sped", "-o", str(tmp_path / "x.png")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("telehub: error: unknown signal 'Sped'")
    assert "Speed" in err


BAD_DBC = str(CANTOOLS_DBC / "issue_199.dbc")


@pytest.mark.parametrize(
    ("log", "dbc", "output", "extra", "message"),
    [
        ("missing.MF4", str(GPS_DBC), "plot.png", [], "No such file"),
        (str(LOG), BAD_DBC, "plot.png", [], "more than 11 bits"),
        (str(LOG), str(GPS_DBC), "plot.xyz", [], ".png"),
        (str(LOG), str(GPS_DBC), "no-folder/plot.png", [], "no folder"),
        (str(LOG), str(GPS_DBC), "plot.png", ["--start", "10", "--end", "5"], "must be after"),
    ],
)
def test_bad_input_is_a_clear_error(
    log: str,
    dbc: str,
    output: str,
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = tmp_path / output
    argv = [str(tmp_path / log), "--dbc", dbc, "--signal", "Speed", "-o", str(image), *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("telehub: error: ")
    assert message in err
    assert not image.exists()


def test_missing_required_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(LOG), "--signal", "Speed", "-o", "x.png"]) == 2
    assert "--dbc" in capsys.readouterr().err
