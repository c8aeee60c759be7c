"""What the model wrote and what its code raised, read the way MAT's sampling agent read them."""

from __future__ import annotations

import pytest

from agent.parsing import STOP_SEQUENCES, exception_message, parse_action, truncate_at_stop

CODE = "x = {}\ny = 2\nz = x['missing']\ncount_words('')"


@pytest.mark.parametrize(("report", "message"), [
    ("KeyError: 'missing' (line 3: z = x['missing'])", "'missing'"),
    ("ToolError: count_words needs some text (line 4: count_words(''))", "count_words needs some text"),
    ("ValueError: bad: value: here (line 2: y = 2)", "bad: value: here"),
    ("SyntaxError: invalid syntax (line 2: y = 2)", "invalid syntax"),
    ("ZeroDivisionError: division by zero", "division by zero"),
    ("AssertionError (line 1: x = {})", ""),  # str() of a bare exception, as the release would show it
    ("step exceeded 60 s and was stopped; variables are lost", "step exceeded 60 s and was stopped; variables are lost"),
    ("Result: (line 9: not in the code)", "Result: (line 9: not in the code)"),  # not a sandbox report: kept whole
])
def test_the_feedback_gets_the_exception_message_alone(report, message):
    assert exception_message(report, CODE) == message


def test_code_is_taken_after_the_last_code_marker_as_mat_did():
    text = "Thought: first try.\nCode:\n```py\nprint(1)\n```\nOn second thought:\nCode:\n```py\nprint(2)\n```"
    assert parse_action(text) == ("first try.\nCode:\n```py\nprint(1)\n```\nOn second thought:", "print(2)")
    assert parse_action("Thought: no code here.") == ("no code here.", None)
    assert parse_action("Thought: t\nCode:\n```python\n  x = 1\n```") == ("t", "x = 1")


def test_generation_stops_where_mats_agent_stopped():
    assert STOP_SEQUENCES == ["<end_action>", "Observation:"]
    assert truncate_at_stop("Code:\n```py\nprint(1)\n```<end_action>\nObservation: 1") == ("Code:\n```py\nprint(1)\n```", True)
