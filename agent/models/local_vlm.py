"""A local transformers VLM (Qwen2-VL, Qwen2.5-VL; MiniCPM-V 4.6/4.7 through their native classes),
optionally with a PEFT adapter, streaming tokens as they are generated.

Generation runs in a thread feeding a TextIteratorStreamer. When the reader stops early (a stop string
appeared, or the person pressed stop and the generator was closed) a stopping criterion ends the
thread at the next token, so the model's single slot frees at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from agent.models.base import ChatMessage, Chunk, Model, ModelError
from agent.models.images import load_image
from agent.models.stopping import cut_at_stop
from agent.models.vlm import encode_chat, first_line, load_processor, model_type
from core import defaults


def _generation_options(sampling: dict[str, float] | None) -> dict:
    """`generate` keywords: sampling with `temperature`, `top_p`, `top_k`, `repetition_penalty`
    (see Settings.sampling); greedy decoding when none are given or the temperature is 0."""
    if not sampling:
        return {"do_sample": False}
    options = {k: v for k, v in sampling.items() if k != "temperature"}
    if sampling.get("temperature", 0) <= 0:
        return {"do_sample": False, "repetition_penalty": options.get("repetition_penalty", 1.0)}
    return {"do_sample": True, "temperature": sampling["temperature"], **options}


class _Cancel:
    """A StoppingCriteria that ends generation once the reader has gone."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class LocalVLM(Model):
    """A Hugging Face VLM checkpoint on this machine: cuda when available (bf16), else the CPU (fp32)."""

    def __init__(
        self,
        path: str | Path,
        adapter: str | Path | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        max_pixels: int = defaults.MAX_PIXELS,
        slots: int = 1,
        sampling: dict[str, float] | None = None,
    ) -> None:
        super().__init__(slots)
        self.sampling = _generation_options(sampling)
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ModelError(f"local model not found: {self.path} — check MAT_LOCAL_MODEL")
        if adapter is not None and not (Path(adapter).expanduser() / "adapter_config.json").is_file():
            raise ModelError(f"no PEFT adapter at {adapter} (adapter_config.json missing) — check MAT_ADAPTER")
        self.name = self.path.name + (f" + {Path(adapter).name}" if adapter else "")
        self.max_pixels = max_pixels
        kind = model_type(self.path)

        import torch
        from transformers import AutoModelForImageTextToText

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        self.dtype = (torch.bfloat16 if on_gpu else torch.float32) if dtype is None else getattr(torch, dtype, None)
        if not isinstance(self.dtype, torch.dtype):
            raise ModelError(f"unknown dtype {dtype!r} — use bfloat16, float16 or float32")
        self.processor = load_processor(self.path, kind)
        try:
            model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=self.dtype, device_map=self.device)
        except Exception as exc:  # corrupt weights, out of memory, ...: one line for the person
            raise ModelError(f"cannot load {self.path.name}: {first_line(exc)}") from None
        if adapter is not None:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(Path(adapter).expanduser()))
            except Exception as exc:
                raise ModelError(f"adapter {adapter} does not fit {self.path.name}: {first_line(exc)}") from None
        self.model = model.eval()

    def _inputs(self, messages: list[ChatMessage]):
        """Token ids and pixels for rendered messages: each image where the message places it
        (`agent.models.vlm.encode_chat`, as training encodes them)."""
        conversation = []
        for message in messages:
            parts = [{"type": "image", "image": load_image(part["image"], self.max_pixels)}
                     if part["type"] == "image" else {"type": "text", "text": part["text"]}
                     for part in message["content"]]
            conversation.append({"role": message["role"], "content": parts})
        inputs = encode_chat(self.processor, conversation, max_pixels=self.max_pixels, add_generation_prompt=True)
        return inputs.to(self.model.device)

    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        inputs = self._inputs(messages)
        tokenizer = self.processor.tokenizer
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = _Cancel()
        result: dict = {}
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=max_new_tokens,
            stopping_criteria=StoppingCriteriaList([cancel]),
            **self.sampling,
        )
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tokenizer)

        def run() -> None:
            try:
                result["sequences"] = self.model.generate(**kwargs)
            except Exception as exc:  # reported to the reader below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, name="local-vlm-generate", daemon=True)
        thread.start()
        try:
            for text in cut_at_stop(streamer, stop):
                yield Chunk(text)
        finally:
            cancel.event.set()
            thread.join()
        if "error" in result:
            raise ModelError(f"generation failed on {self.name}: {first_line(result['error'])}")
        prompt_tokens = inputs["input_ids"].shape[1]
        yield Chunk("", prompt_tokens, result["sequences"].shape[1] - prompt_tokens)
