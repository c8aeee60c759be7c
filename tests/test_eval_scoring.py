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


def test_mat_does_not_read_the_blacklist():
    # MAT's examples/gta/eval.py reads gt_answer["whitelist"] only: a blacklisted word does not veto.
    assert gta_match("yes, notably", gt(["yes"], blacklist=[["not"]]), "mat")
    assert gta_match("yes, or no", gt(["yes"], blacklist=[["no"]]), "mat")
    assert not gta_match("yes, or no", gt(["yes"], blacklist=[["no"]]), "official")


def test_mat_reads_the_answer_as_its_text():
    assert gta_match(68, gt(["68"]), "mat")  # str(answer), as MAT's script does
    assert gta_match("anything", gt(), "mat")  # no whitelist group to miss: MAT counts it right


def result(task_id, truth, prediction, status="done", tools=(), gt_tools=()):
    from eval.metrics import Result

    kind = "objective" if isinstance(truth, dict) else "subjective" if isinstance(truth, list) else "image generation"
    return Result(task_id, 0, kind, "", "q", truth, list(gt_tools), prediction, None, status, "", None, 1, 1, 1,
                  list(tools), 0.0)


def test_mat_protocol_scores_only_the_queries_mats_script_scores():
    """The paper's 53.85 is 84/156: objective queries only, subjective and image generation skipped."""
    from eval.metrics import gta_scores, lexical_similarity

    results = [result("o1", gt(["68"]), "It is 680"), result("o2", gt(["yes"], blacklist=[["no"]]), "yes, no"),
               result("o3", gt(["Paris"]), "London"), result("o4", {"whitelist": ["Paris"], "blacklist": None}, "x"),
               result("s1", ["A red apple."], "a red apple"), result("g1", None, "here is your picture")]
    mat = {(s.name, s.group): s for s in gta_scores(results, "mat", "gta", lexical_similarity())}
    answer = mat[("AnsAcc", "objective")]
    assert (answer.numerator, answer.denominator) == (2, 3)  # o4's whitelist holds a bare string: MAT skips it
    assert ("AnsAcc+subj", "objective+subjective") not in mat  # no subjective score in MAT's procedure
    official = {(s.name, s.group): s for s in gta_scores(results, "official", "gta", lexical_similarity())}
    assert (official[("AnsAcc", "objective")].numerator, official[("AnsAcc", "objective")].denominator) == (0, 4)


def test_tool_accuracy_gives_precision_recall_and_f1_as_gtas_evaluator():
    """Calling every tool no longer scores 100%: precision falls with every call the reference did not make."""
    from eval.metrics import tool_scores

    every = ["OCR", "ImageDescription", "TextToBbox", "RegionAttributeDescription", "Calculator", "DrawBox"]
    results = [result("1", gt(["68"]), "68", tools=every, gt_tools=["OCR", "Calculator"]),
               result("2", gt(["2"]), "2", tools=["OCR"], gt_tools=["OCR"])]
    scores = {(s.name, s.group): s for s in tool_scores(results, "gta")}
    recall, precision = scores[("ToolAcc recall", "overall")], scores[("ToolAcc precision", "overall")]
    assert (recall.numerator, recall.denominator) == (3, 3)
    assert (precision.numerator, precision.denominator) == (3, 7)
    f1 = scores[("ToolAcc F1", "overall")]
    assert f1.value == pytest.approx(2 * (3 / 7) * 1 / (3 / 7 + 1) * 100)
    assert "P 42.86%, R 100.00%" in f1.short()
    perception = scores[("ToolAcc precision", "perception")]  # GTA counts calls per category: 5 perception calls
    assert (perception.numerator, perception.denominator) == (2, 5)
    assert scores[("ToolAcc recall", "logic")].value == 100.0


def test_tool_calls_under_the_mat_profile_count_in_every_category_they_stand_for():
    from eval.metrics import tool_scores

    results = [result("1", gt(["68"]), "68", tools=["ocr", "ocr"], gt_tools=["OCR", "MathOCR", "Calculator"])]
    scores = {(s.name, s.group): s for s in tool_scores(results, "mat")}
    assert (scores[("ToolAcc recall", "overall")].numerator, scores[("ToolAcc recall", "overall")].denominator) \
        == (2, 2)  # Calculator is plain Python for MAT: left out
    assert scores[("ToolAcc precision", "overall")].denominator == 2  # two calls written
    assert scores[("ToolAcc precision", "perception")].denominator == 2  # ocr stands for OCR (perception) ...
    assert scores[("ToolAcc precision", "logic")].denominator == 2  # ... and MathOCR (logic)


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


# ------------------------------------------------------------------ subjective answers


def subjective(prediction, references):
    from eval.metrics import Result

    return Result("s1", 0, "subjective", "", "q", references, [], prediction, None, "done", "", None, 1, 1, 1, [], 0.0)


def test_subjective_answers_add_their_best_similarity_and_say_how_it_was_measured():
    from eval.metrics import Result, gta_scores, lexical_similarity

    objective = Result("o1", 1, "objective", "", "q", gt(["68"]), [], "68", None, "done", "", None, 1, 1, 1, [], 0.0)
    results = [objective, subjective("a red apple on a table", ["A red apple lies on a table.", "an orange"]),
               subjective(None, ["anything"])]
    scores = {s.name: s for s in gta_scores(results, "official", "gta", lexical_similarity())}
    assert (scores["AnsAcc"].numerator, scores["AnsAcc"].denominator) == (1, 1)
    mixed = scores["AnsAcc+subj"]
    assert mixed.denominator == 3 and 1.5 < mixed.numerator < 2.0  # 1 + a high similarity + 0 for no answer
    assert "offline fallback" in mixed.protocol and "official" in mixed.protocol


def test_subjective_score_falls_back_offline_and_embeds_with_a_local_encoder(tiny_checkpoint, tmp_path,
                                                                            monkeypatch):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from eval.metrics import EMBEDDING_ENV, default_similarity, embedding_similarity

    monkeypatch.setenv(EMBEDDING_ENV, str(tmp_path / "not-downloaded"))
    assert "offline fallback" in default_similarity().name
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    encoder_dir = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    similarity = embedding_similarity(str(encoder_dir))
    assert similarity.fn("a red apple", "a red apple") == pytest.approx(1.0, abs=1e-5)
    assert similarity.best("a red apple", ["a red apple", "something else"]) == pytest.approx(1.0, abs=1e-5)
    assert str(encoder_dir) in similarity.name
