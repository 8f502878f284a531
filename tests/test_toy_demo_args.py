"""``rlblocks toy-demo`` argument checks, through ``python -m rlblocks`` in a subprocess.

A bad value stops before any work with one stderr line naming the flag, exit status 2, no
traceback, and the ``--out`` directory neither created nor touched. The Python function raises the
same :class:`~rlblocks.errors.ConfigError`.
"""

from __future__ import annotations

import pytest

from rlblocks.errors import ConfigError
from rlblocks.toy_demo import toy_demo

BAD = [
    (["--steps", "0"], "--steps 0 must be an integer >= 1"),
    (["--steps", "-5"], "--steps -5 must be an integer >= 1"),
    (["--trials", "0"], "--trials 0 must be an integer >= 1"),
    (["--trials", "-1"], "--trials -1 must be an integer >= 1"),
    (["--seed", "-3"], "--seed -3 must be an integer >= 0"),
]


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "existing-out"])
@pytest.mark.parametrize("extra,fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_toy_demo_argument_is_one_line_and_writes_nothing(extra, fragment, existing, cli, tree_state, tmp_path):
    out = tmp_path / "demo"
    if existing:  # an earlier demo's files stay as they were
        out.mkdir()
        (out / "toy_demo.csv").write_text("update,q_learning\n10,1.0\n")
    before = tree_state(tmp_path)
    r = cli("toy-demo", "--out", out, "--steps", "20", "--trials", "2", *extra, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlblocks: error: toy-demo ") and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert tree_state(tmp_path) == before
    assert out.exists() == existing


def test_out_inside_a_file_is_one_line(cli, tree_state, tmp_path):
    (tmp_path / "f").write_text("x")
    before = tree_state(tmp_path)
    r = cli("toy-demo", "--out", "f/demo", "--steps", "5", "--trials", "1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out f/demo" in r.stderr and "is a file" in r.stderr
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("kwargs,fragment", [({"steps": 0}, "--steps 0"), ({"trials": -1}, "--trials -1"),
                                             ({"every": 0}, "every 0"), ({"steps": 2.5}, "--steps 2.5")])
def test_python_api_raises_config_error_before_creating_out(kwargs, fragment, tmp_path):
    with pytest.raises(ConfigError, match=fragment):
        toy_demo(tmp_path / "demo", **{"steps": 20, "trials": 2, **kwargs})
    assert not (tmp_path / "demo").exists()


def test_short_demo_writes_the_last_update_even_below_every(tmp_path):
    """Fewer steps than ``every``: the CSV still has the row of the returned (final) errors."""
    final = toy_demo(tmp_path / "demo", steps=3, trials=1, every=10, plot=False)
    lines = (tmp_path / "demo" / "toy_demo.csv").read_text().splitlines()
    assert lines[0].split(",")[0] == "update" and len(lines) == 2
    row = lines[1].split(",")
    assert row[0] == "3" and [float(v) for v in row[1:]] == pytest.approx(list(final.values()), rel=1e-5)
