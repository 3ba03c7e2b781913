"""benchmarks/testbed_composition.py: held-out swaps, argument checks and a tiny end-to-end run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from _bench_scripts import load_benchmark

from safetext.testbed.render import HELDOUT_COMBOS, sample_spec


@pytest.fixture(scope="module")
def tc():  # type: ignore[no-untyped-def]
    return load_benchmark("testbed_composition")


def test_swapped_heldout_pair_is_never_trained(tc) -> None:  # type: ignore[no-untyped-def]
    heldout = tc.heldout_pairs("yellow,banner")
    assert ("yellow", "banner") in heldout and ("white", "banner") not in heldout
    assert heldout - {("yellow", "banner")} == HELDOUT_COMBOS - {("white", "banner")}
    rng = random.Random(0)
    drawn = {(s.color, s.shape) for s in (sample_spec(rng, "train", heldout=heldout) for _ in range(3000))}
    assert ("yellow", "banner") not in drawn and ("white", "banner") in drawn
    assert tc.heldout_pairs("") == HELDOUT_COMBOS


def test_default_draws_unchanged_by_the_heldout_argument() -> None:
    a, b = random.Random(5), random.Random(5)
    assert [sample_spec(a) for _ in range(200)] == [sample_spec(b, heldout=HELDOUT_COMBOS) for _ in range(200)]


def test_without_color_leaves_the_shape_and_the_rest(tc) -> None:  # type: ignore[no-untyped-def]
    from safetext.testbed.render import TEMPLATES, SignSpec

    for template in range(len(TEMPLATES)):
        prompt = SignSpec("hello", "white", "banner", text_color="black", template=template).prompt()
        out = tc.without_color(prompt)
        assert "white" not in out and out.startswith("a banner ") and "hello" in out
        assert "black letters" in out  # only the sign colour goes
    assert tc.without_color('a red sign with white letters that says "x"') == 'a sign with white letters that says "x"'


@pytest.mark.parametrize("bad", ["yellow", "teal,banner", "white,triangle"])
def test_bad_swap_is_refused(tc, bad: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        tc.parse_args(["--out", "x", "--swap-heldout", bad])
    assert "--swap-heldout" in capsys.readouterr().err


@pytest.mark.slow  # trains a small model
def test_tiny_run_end_to_end(tc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    args = ["--n", "128", "--steps", "2", "--per-pair", "1", "--out", str(out)]
    assert tc.main(args) == 0
    result = json.loads((out / "result.json").read_text())["pairs"]
    assert len(result) == len(HELDOUT_COMBOS) + len(tc.CONTROL_PAIRS)
    assert {name for name, r in result.items() if r["heldout"]} == {f"{c} {s}" for c, s in HELDOUT_COMBOS}
    assert all(r["n"] == 1 and len(r["got"]) == 1 for r in result.values())
    assert (out / "white_banner.png").exists() and "| white banner | yes |" in (out / "result.md").read_text()
    # the cached signs are reused only by a run that draws the same ones
    with pytest.raises(SystemExit, match="other draws"):
        tc.main(["--n", "128", "--steps", "1", "--per-pair", "1", "--swap-heldout", "yellow,banner", "--data-from", str(out), "--out", str(tmp_path / "b")])
