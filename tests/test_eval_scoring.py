"""Every rule of the GAIA and GTA matchers, one case (or a few) each."""

from __future__ import annotations

import pytest

from eval.scoring import gaia_match, gta_match


def gt(*groups, blacklist=None) -> dict:
    return {"whitelist": [list(g) for g in groups], "blacklist": blacklist}


# ------------------------------------------------------------------ GAIA


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        # numbers: '$', '%' and ',' dropped, then compared as floats
        ("$1,000", "1000", True),
        ("12%", "12", True),
        ("17.0", "17", True),
        ("17 apples", "17", False),
        ("18", "17", False),
        ("", "17", False),
        # lists: split on ',' and ';', same length, element-wise
        ("apple; banana", "apple, banana", True),
        ("Apple ,  BANANA", "apple, banana", True),
        ("apple, banana, cherry", "apple, banana", False),
        ("3, 4", "3, 4", True),
        ("3.0, $4", "3, 4", True),
        ("3, 5", "3, 4", False),
        # list elements that are strings keep their punctuation
        ("st. louis, paris", "st. louis, paris", True),
        ("st louis, paris", "st. louis, paris", False),
        # strings: whitespace, case and punctuation ignored
        ("Sea Gull!", "seagull", True),
        ("  The Beatles. ", "the beatles", True),
        ("Beatles", "the beatles", False),
    ],
)
def test_gaia_official_rules(prediction, truth, expected):
    assert gaia_match(prediction, truth) is expected


def test_gaia_missing_or_odd_answers_are_wrong_and_never_raise():
    assert gaia_match(None, "None") is False  # the official scorer would turn None into "None" and accept it
    assert gaia_match(None, "17") is False
    assert gaia_match("17", None) is False
    assert gaia_match(17, "17") is True  # a number from final_answer(17) is read as its text
    assert gaia_match(["a", "b"], "a, b") is False
    assert gaia_match(object(), "x") is False


# ------------------------------------------------------------------ GTA official


def test_official_needs_every_whitelist_group_with_any_alias():
    truth = gt(["Paris", "paris city"], ["France"])
    assert gta_match("It is Paris, in France", truth)
    assert gta_match("PARIS CITY, france", truth)  # case-insensitive
    assert not gta_match("It is Paris", truth)


def test_official_matches_whole_words_only():
    assert gta_match("The total is 68 dollars", gt(["68"]))
    assert not gta_match("The total is 680 dollars", gt(["68"]))
    assert not gta_match("cats", gt(["cat"]))
    assert gta_match("4.816 km", gt(["4.816"]))
    assert not gta_match("4.8160", gt(["4.816"]))


def test_official_blacklist_vetoes_a_match():
    truth = gt(["yes"], blacklist=[["no", "not"]])
    assert gta_match("yes", truth)
    assert not gta_match("yes, or no", truth)
    assert not gta_match("yes and not", truth)
    assert gta_match("yes, notably", truth)  # blacklist aliases are whole words too
    assert not gta_match("yes no", gt(["yes"], blacklist=["no"]))  # a flat blacklist is read as single groups


def test_official_fails_answers_that_begin_or_end_with_a_symbol():
    # \b never sits between a space (or the string's edge) and a symbol: GTA's own matcher rejects these.
    assert not gta_match("-2", gt(["-2"]))
    assert not gta_match("The change is 50%", gt(["50%"]))
    assert not gta_match("It costs $2697", gt(["$2697"]))


def test_empty_or_missing_prediction_is_wrong_under_every_protocol():
    for protocol in ("official", "mat", "fixed"):
        assert not gta_match(None, gt(["68"]), protocol)
        assert not gta_match("", gt(["68"]), protocol)


def test_bad_protocol_or_subjective_truth_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        gta_match("x", gt(["x"]), "strict")
    with pytest.raises(ValueError, match="objective"):
        gta_match("x", ["a reference sentence"])


# ------------------------------------------------------------------ MAT's substring rule


def test_mat_accepts_substrings():
    assert gta_match("The total is 680 dollars", gt(["68"]), "mat")
    assert gta_match("cats", gt(["cat"]), "mat")
    assert gta_match("answer: -2", gt(["-2"]), "mat")
    assert gta_match("It's $2697.", gt(["$2697"]), "mat")
    assert not gta_match("It is Paris", gt(["Paris"], ["France"]), "mat")


def test_mat_blacklist_is_a_substring_veto():
    assert not gta_match("yes, notably", gt(["yes"], blacklist=[["not"]]), "mat")
    assert gta_match("YES", gt(["yes"], blacklist=[["no"]]), "mat")


# ------------------------------------------------------------------ fixed


def test_fixed_accepts_answers_edged_with_symbols():
    assert gta_match("-2", gt(["-2"]), "fixed")
    assert gta_match("The change is 50%.", gt(["50%"]), "fixed")
    assert gta_match("It costs $2697", gt(["$2697"]), "fixed")


def test_fixed_keeps_whole_word_matching():
    assert not gta_match("-25", gt(["-2"]), "fixed")
    assert not gta_match("150%", gt(["50%"]), "fixed")
    assert not gta_match("5-2", gt(["-2"]), "fixed")  # glued to a digit: not the answer -2
    assert not gta_match("680", gt(["68"]), "fixed")
    assert gta_match("It is Paris, in France", gt(["Paris"], ["France"]), "fixed")
    assert not gta_match("yes, or no", gt(["yes"], blacklist=[["no"]]), "fixed")
