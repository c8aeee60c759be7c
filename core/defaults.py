"""Every default in one place. Settings, the agent loop, the sandbox, the model clients, training and
synthesis read their defaults from here, so a default changed here changes everywhere.
"""

# Where things live.
DATA_DIR = "data"
DB_NAME = "mat.db"

# Images: Qwen2-VL's processor budget (1024 patches of 28x28 px), the budget MAT served and trained at.
MAX_PIXELS = 1024 * 28 * 28
MAX_UPLOAD_MB = 25

# The agent loop.
TOOL_PROFILE = "mat"
MAX_STEPS = 8
MAX_ERRORS = 4  # failed steps in a row before the agent is asked for a plain answer
MAX_NEW_TOKENS = 1536

# Local sampling, as MAT's Qwen engine (tongagent/llm_engine/qwen.py); temperature 0 decodes greedily.
TEMPERATURE = 0.7
TOP_P = 0.8
TOP_K = 100
REPETITION_PENALTY = 1.05

# The app: agent run folders kept under data/runs, browser sessions kept in memory, and how often (and after how
# long) Gradio's cached files (uploads, images shown) are deleted, in seconds.
KEEP_RUNS = 200
SESSIONS = 200
CACHE_SWEEP = (3600, 86400)
MEMORY_TRIM_SECONDS = 30  # how often the app hands memory its requests freed back to the system (core.memory)
MALLOC_ARENAS = 2  # allocator arenas the app's threads share (core.memory.limit_arenas)

# Review's step sampler: candidates per sample (SPORT's beam of 3) and the most one request may ask for.
SAMPLER_K = 3
SAMPLER_MAX_K = 8

# The sandbox, per code step.
STEP_SECONDS = 60.0
SANDBOX_MEMORY_MB = 4096
SANDBOX_FILE_MB = 256
SANDBOX_OUTPUT_CHARS = 20_000
SANDBOX_DISK_MB = 1024  # what one step may add to the working directory (and the private temp dir)
SANDBOX_THREADS = 128

# OpenAI-compatible endpoints.
OPENAI_URL = "https://api.openai.com/v1"  # where a client goes when no base URL is given
OPENAI_MODEL = "gpt-4o-mini"  # when only a key for api.openai.com is given
REMOTE_CONCURRENCY = 8  # requests in flight per endpoint
REQUEST_TIMEOUT = 60.0  # seconds for one answer to arrive
CONNECT_SECONDS = 5.0  # to open a connection
UNREACHABLE_SECONDS = 15.0  # an endpoint that never answers is given up on after this long, retries included
MAX_RETRIES = 3
BACKOFF = 0.5  # the first retry's wait; each next one doubles, with jitter
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 60.0  # the longest a server's Retry-After is obeyed

# Synthesis asks its endpoint for long one-shot answers (files, verdicts), so it waits longer and retries more.
SYNTHESIS_TIMEOUT = 120.0
SYNTHESIS_RETRIES = 5
