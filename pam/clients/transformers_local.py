"""A local Hugging Face model as a chat backend: a causal LM (text only) or a vision-language model.

The model folder is loaded with ``trust_remote_code=False``; prompts are built with the folder's
chat template. torch and transformers are imported when the backend is built, not at import.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .base import ChatBackend, Usage
from .images import data_url_to_image

KINDS = ("text", "vision")
PARAMS = {"max_tokens", "temperature", "top_p", "seed", "stop"}


class TransformersChatBackend(ChatBackend):
    """``kind="text"``: ``AutoModelForCausalLM`` + the tokenizer's chat template; image parts are an
    error. ``kind="vision"``: ``AutoModelForImageTextToText`` + ``AutoProcessor``; ``image_url``
    data-URL parts are decoded to PIL images and given to the processor.

    Greedy decoding unless ``temperature > 0``. Requests run one at a time (a lock guards
    ``generate``), so the batch helper is safe but not parallel here. With ``lazy=True`` the model
    is loaded on the first request, so a run answered entirely from a cache never loads it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str = "text",
        device: str = "cpu",
        dtype: str = "float32",
        max_tokens: int = 256,
        lazy: bool = False,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"model folder not found: {path}")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json; expected a Hugging Face model folder")
        self.kind = kind
        self.path = path
        self.model = path.name
        self.device = device
        self.dtype = dtype
        self.default_max_tokens = int(max_tokens)
        self.usage = Usage()
        self._lock = threading.Lock()
        self.net = None
        if not lazy:
            self._load()

    def _load(self) -> None:
        import torch
        import transformers

        kind, path = self.kind, self.path
        self.torch = torch
        torch_dtype = getattr(torch, self.dtype)
        if kind == "text":
            processor = transformers.AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
            model_class = transformers.AutoModelForCausalLM
        else:
            processor = transformers.AutoProcessor.from_pretrained(str(path), trust_remote_code=False)
            model_class = transformers.AutoModelForImageTextToText
        if not getattr(processor, "chat_template", None):
            raise ValueError(f"{path}: the {'tokenizer' if kind == 'text' else 'processor'} has no chat_template")
        net = model_class.from_pretrained(str(path), trust_remote_code=False, dtype=torch_dtype)
        self.processor = processor
        self.net = net.to(self.device).eval()

    def describe(self) -> dict[str, Any]:
        return {"backend": f"transformers-{self.kind}", "model": self.model, "path": str(self.path)}

    def _convert(self, messages: list[dict]) -> list[dict]:
        out = []
        for i, message in enumerate(messages):
            content = message.get("content")
            if isinstance(content, str):
                out.append(
                    {
                        "role": message["role"],
                        "content": content if self.kind == "text" else [{"type": "text", "text": content}],
                    }
                )
                continue
            if not isinstance(content, list):
                raise ValueError(f"messages[{i}].content must be a string or a list of parts")
            parts = []
            for part in content:
                if part.get("type") == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part.get("type") == "image_url":
                    if self.kind == "text":
                        raise ValueError(
                            f"messages[{i}] has an image part but {self.path} is a text-only model (kind='text')"
                        )
                    parts.append({"type": "image", "image": data_url_to_image(part["image_url"]["url"])})
                else:
                    raise ValueError(f"messages[{i}]: unknown content part type {part.get('type')!r}")
            if self.kind == "text":
                out.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
            else:
                out.append({"role": message["role"], "content": parts})
        return out

    def complete(self, messages: list[dict], **params: Any) -> str:
        unknown = set(params) - PARAMS
        if unknown:
            raise ValueError(
                f"TransformersChatBackend does not support parameters {sorted(unknown)}; supported: {sorted(PARAMS)}"
            )
        with self._lock:
            if self.net is None:
                self._load()
        torch = self.torch
        converted = self._convert(messages)
        inputs = self.processor.apply_chat_template(
            converted, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        temperature = float(params.get("temperature", 0.0) or 0.0)
        gen: dict[str, Any] = {
            "max_new_tokens": int(params.get("max_tokens", self.default_max_tokens)),
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            gen["temperature"] = temperature
            if "top_p" in params:
                gen["top_p"] = float(params["top_p"])
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if tokenizer.pad_token_id is not None:
            gen["pad_token_id"] = tokenizer.pad_token_id
        if params.get("stop"):
            gen["stop_strings"] = params["stop"] if isinstance(params["stop"], list) else [params["stop"]]
            gen["tokenizer"] = tokenizer
        with self._lock, torch.no_grad():
            if "seed" in params:
                torch.manual_seed(int(params["seed"]))
            output = self.net.generate(**inputs, **gen)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_len:]
        self.usage.add(requests=1, prompt_tokens=prompt_len, completion_tokens=int(new_tokens.numel()))
        return tokenizer.decode(new_tokens, skip_special_tokens=True)
