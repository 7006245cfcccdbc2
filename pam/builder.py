"""Build a PAM model with its tokenizer and processor from a typed config."""

from __future__ import annotations

from dataclasses import dataclass

from .modeling.config import PAMConfig
from .modeling.pam import PAM
from .processing.processor import PAMProcessor
from .processing.tokenizer import build_debug_tokenizer, load_tokenizer


@dataclass
class PAMBundle:
    model: PAM
    tokenizer: object
    processor: PAMProcessor


def tokenizer_for(config: PAMConfig):
    """The config's tokenizer folder, else the LLM folder, else (a config-built LLM) the debug one."""
    path = config.llm.tokenizer or config.llm.name_or_path
    if path is not None:
        return load_tokenizer(path, config.image_token)
    return build_debug_tokenizer(image_token=config.image_token)


def build_pam(config: PAMConfig, tokenizer=None) -> PAMBundle:
    config.validate()
    tokenizer = tokenizer if tokenizer is not None else tokenizer_for(config)
    vocab = config.llm.config.get("vocab_size") if config.llm.config else None
    if vocab is not None and len(tokenizer) > vocab:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but llm.config.vocab_size is {vocab}")
    processor = PAMProcessor(config=config, tokenizer=tokenizer)
    model = PAM.from_config(config, image_token_id=processor.image_token_id)
    return PAMBundle(model=model, tokenizer=tokenizer, processor=processor)
