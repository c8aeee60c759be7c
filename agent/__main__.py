"""`python -m agent run "TASK" --image PATH` runs the agent; `python -m agent prompt` prints the system prompt;
`python -m agent exec FILE` runs code as a step would."""

from __future__ import annotations

import argparse
import sys

from core.cli import run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="solve a task with the agent, printing each step as it happens")
    run.add_argument("task")
    run.add_argument("--image", action="append", default=[], help="an image shown to the model (repeatable)")
    run.add_argument("--attach", action="append", default=[], help="a file the task may read (repeatable)")
    run.add_argument("--profile", default=None, help="tool profile: mat (the release's), mat+ocr, gaia or gta")
    run.add_argument("--max-steps", type=int, default=None)
    run.add_argument("--tiny", action="store_true", help="smoke mode: a tiny random Qwen2-VL built on the fly")
    run.add_argument("--system-prompt-from", default=None, help="an MM-Traj JSON file whose first record's system turn to use")
    run.add_argument("--record", default=None, metavar="OUT.json", help="write the run as an MM-Traj release record")

    prompt = commands.add_parser("prompt", help="print a profile's default system prompt")
    prompt.add_argument("--profile", default=None, help="tool profile (default: MAT_TOOL_PROFILE or mat)")

    exe = commands.add_parser("exec", help="run a code file exactly as an agent step runs (same sandbox, same tools)")
    exe.add_argument("file")
    exe.add_argument("--attach", action="append", default=[], help="a file the code may read (repeatable)")
    exe.add_argument("--timeout", type=float, default=None, help="seconds before the step is killed")
    exe.add_argument("--workdir", default=None, help="working directory (a fresh temporary one by default)")

    args = parser.parse_args(argv)
    return run_main(lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from agent.cli import run_command

        return run_command(args)
    if args.command == "prompt":
        from agent.cli import prompt_command

        return prompt_command(args)
    from agent.sandbox.cli import exec_command

    return exec_command(args)


if __name__ == "__main__":
    sys.exit(main())
