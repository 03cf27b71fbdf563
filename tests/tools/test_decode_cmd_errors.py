"""``telehub decode`` on bad inputs: exit codes and messages naming the file and the
reason, never a traceback, and no output left behind by a failed run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tools.decode_cli_data import run_main, write_files
from vehicle_agent.errors import LogFormatError

ROOT = Path(__file__).resolve().parents[2]
REJECTED_DBC = ROOT / "tests" / "data" / "cantools-dbc" / "issue_199.dbc"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("decode-errors"))


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code, out, err = run_main(capsys, *args)
    assert out == ""
    return code, err


def test_bad_inputs(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    log, dbc = str(files["log"]), str(files["dbc"])
    out = str(tmp_path / "o.parquet")
    code, err = _error(capsys, str(tmp_path / "missing.blf"), "--dbc", dbc, "-o", out)
    assert (code, "missing.blf" in err, err.startswith("telehub: error:")) == (1, True, True)
    corrupt = tmp_path / "corrupt.blf"
    corrupt.write_bytes(b"LOGG" + bytes(range(200)))
    code, err = _error(capsys, str(corrupt), "--dbc", dbc, "-o", out)
    assert (code, "corrupt.blf" in err) == (1, True)
    code, err = _error(capsys, log, "--dbc", str(REJECTED_DBC), "-o", out)
    assert (code, "issue_199.dbc" in err, "cannot load DBC file" in err) == (1, True, True)
    code, err = _error(capsys, log, "--dbc", str(tmp_path / "nope.dbc"), "-o", out)
    assert (code, "nope.dbc" in err) == (1, True)
    code, err = _error(capsys, log, "--dbc", dbc, "-o", str(tmp_path / "no" / "such" / "o.csv"))
    assert (code, "no directory" in err) == (1, True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _error(capsys, log, "--dbc", dbc, "-o", str(blocker / "sub"))
    assert (code, "cannot create output directory" in err) == (1, True)
    assert _error(capsys, log, "--dbc", dbc, "-o", str(tmp_path / "x.txt"))[0] == 2
    code, err = _error(capsys, log, "--dbc", dbc, "-o", str(tmp_path / "w.csv"), "--layout", "wide")
    assert (code, "holds one message" in err) == (2, True)
    assert _error(capsys, log, "--dbc", dbc, "-o", out, "--start", "2", "--end", "1")[0] == 2
    assert _error(capsys, log, "--dbc", dbc, "-o", out, "--chunk", "0")[0] == 2
    assert _error(capsys, log, "--dbc", dbc, "-o", log, "--format", "csv")[0] == 2
    assert _error(capsys, log, "-o", out)[0] == 2  # --dbc is required
    code, err = _error(capsys, str(files["dbc"]), "--dbc", dbc, "-o", out, "--reader", "fast")
    assert (code, "fast reader" in err) == (1, True)
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_failure_midway_leaves_no_output(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vehicle_agent.logs import read_columns as real

    def failing(path: Path, **kwargs: Any) -> Any:
        chunks = real(path, **kwargs)
        yield next(chunks)
        raise LogFormatError(path, "frame 7", "broken")

    monkeypatch.setattr("tools.decode_cmd.read_columns", failing)
    out = tmp_path / "out"
    code, err = _error(
        capsys, str(files["log"]), "--dbc", str(files["dbc"]), "-o", str(out), "--chunk", "50"
    )
    assert (code, "frame 7: broken" in err) == (1, True)
    assert list(out.iterdir()) == []


def test_nan_and_infinity_are_null_in_json() -> None:
    """JSON has no NaN or infinity; every other number keeps its exact repr."""
    from tools.decode.sinks import _json_number

    values = (float("nan"), float("inf"), 1.5, 2, -0.0, 0.1 + 0.2, 2**64 + 1)
    assert [_json_number(v) for v in values] == [
        "null",
        "null",
        "1.5",
        "2",
        "-0.0",
        "0.30000000000000004",
        "18446744073709551617",
    ]
