"""The Settings tab: what the app is configured with, where data lives, how to change it."""

from __future__ import annotations

from agent.config import Settings

ENV_HELP = """\
Settings come from environment variables, read at start:

| variable | meaning |
|---|---|
| `MAT_BASE_URL` / `OPENAI_BASE_URL` | OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, SGLang) |
| `MAT_API_KEY` / `OPENAI_API_KEY` | its key (never shown, never passed to model-written code) |
| `MAT_MODEL` | model name(s) at the endpoint, comma-separated for the picker |
| `MAT_LOCAL_MODEL`, `MAT_ADAPTER` | a local Qwen2-VL / Qwen2.5-VL / MiniCPM-V 4.6-4.7 checkpoint and an optional LoRA adapter |
| `MAT_VLM_MODEL` | the model the `visualizer` tool asks (default: the controller) |
| `MAT_DATA_DIR`, `MAT_DB` | data directory (default `./data`) and database file (default `data/mat.db`) |
| `MAT_TOOL_PROFILE`, `MAT_MAX_STEPS` | default tool profile (`mat` = the release's tools and prompt, `mat+ocr`, `gaia`, `gta`) and step limit |
| `MAT_TEMPERATURE`, `MAT_TOP_P`, `MAT_TOP_K`, `MAT_REPETITION_PENALTY` | a local model's sampling (MAT's: 0.7, 0.8, 100, 1.05; temperature 0 is greedy) |
| `MAT_STEP_TIMEOUT`, `MAT_SANDBOX_MEMORY_MB` | limits of each code step |
| `MAT_REMOTE_CONCURRENCY` | how many runs call a remote endpoint at once |
| `MAT_AUTH` | `user:password,...` turns on login |
"""


def build_settings_tab(settings: Settings) -> None:
    import gradio as gr

    from agent.sandbox import sandbox_level

    rows = [[name, value] for name, value in settings.public().items()]
    rows.append(["sandbox", sandbox_level()])
    gr.Dataframe(rows, headers=["setting", "value"], interactive=False, label="Current settings")
    gr.Markdown(ENV_HELP)
