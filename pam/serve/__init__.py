"""Serving PAM: an OpenAI-compatible region server with request batching, and a Gradio demo.

``engine`` is the only module that touches the model; ``protocol`` parses and validates chat
requests; ``batcher`` groups concurrent requests; ``app`` is the FastAPI application; ``demo`` the
Gradio UI. Nothing here imports FastAPI or Gradio at package import.
"""
