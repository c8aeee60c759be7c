"""`python -m agent run`: the agent in the terminal, steps printed as they happen; `python -m agent prompt`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from agent.config import Settings
from agent.loop import Delta
from agent.models.base import ModelError
from agent.session import UploadError, loop_limits, start_run


def run_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.text import Text

    from agent.models import load_model
    from agent.prompt import system_prompt_from_record
    from agent.sandbox import sandbox_level

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    settings = Settings()
    try:
        model = load_model(settings, tiny=args.tiny)
        system_prompt = system_prompt_from_record(args.system_prompt_from) if args.system_prompt_from else None
        files = [Path(p) for p in [*args.image, *args.attach]]
        agent_run = start_run(
            settings, args.task, files, controller=model, tiny=args.tiny, profile=args.profile,
            system_prompt=system_prompt,
        )
    except (ModelError, UploadError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(f"[dim]sandbox: {sandbox_level()} · model: {model.name} · workdir: {agent_run.workdir}[/dim]")
    answer = None
    try:
        with Live(console=console, refresh_per_second=8, transient=True) as live:
            for event in agent_run.steps(model, loop_limits(settings, args.max_steps, tiny=args.tiny)):
                if isinstance(event, Delta):
                    live.update(Text(event.text[-2000:], style="dim"))
                    continue
                live.update(Text(""))
                console.rule(f"Step {event.index + 1} · {event.seconds:.1f} s · {event.output_tokens} tokens")
                if event.prompt is not None:
                    console.print(Panel(event.prompt, title="out of steps: the loop asks", border_style="yellow"))
                if event.thought:
                    console.print(Text(event.thought, style="italic"))
                if event.code:
                    console.print(Syntax(event.code, "python", theme="ansi_dark"))
                if event.error:
                    console.print(Panel(event.error.strip(), title="error", border_style="red"))
                elif event.observation is not None:
                    console.print(Panel(event.observation.rstrip() or "(no output)", title="observation"))
                for path in event.files:
                    console.print(f"[cyan]file:[/cyan] {agent_run.workdir / path}")
                if event.is_final:
                    answer = event.final_answer
    except ModelError as exc:
        console.print(f"[red]model error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        agent_run.stop()
        console.print("[yellow]stopped[/yellow]")
        return 130
    finally:
        agent_run.close()
    console.print(Panel(str(answer), title="final answer", border_style="green"))
    if args.record:
        return _write_record(agent_run, Path(args.record), console)
    return 0


def prompt_command(args: argparse.Namespace) -> int:
    """Print the system prompt a run with this profile is served, exactly (no trailing newline added)."""
    from agent.prompt import default_system_prompt

    try:
        text = default_system_prompt(args.profile or Settings().profile)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _write_record(agent_run, out: Path, console) -> int:
    """The run as a release file: a JSON list holding its one record, importable with `python -m review import`
    and trainable with `python -m train --data`, its attachments written beside it under the names the record
    gives them (`attachments/photo.png`), where both look by default. Each file is written whole or not at all,
    the record last, so a record never names a file that is not there."""
    from core.files import atomic_write

    record = agent_run.trajectory.to_record(agent_run.workdir.name)
    try:
        for name, source in agent_run.attachments.items():
            with atomic_write(out.parent / name, "wb") as copy:
                copy.write(Path(source).read_bytes())
        with atomic_write(out) as handle:
            handle.write(json.dumps([record], ensure_ascii=False, indent=1) + "\n")
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot write {exc.filename or out}: {exc.strerror or exc}")
        return 1
    names = ", ".join(agent_run.attachments)
    console.print(f"[dim]record written to {out}{f' with {names} beside it' if names else ''}[/dim]")
    return 0
