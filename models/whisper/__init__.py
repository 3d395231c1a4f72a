"""Whisper (openai/whisper) in MLX: config, network, audio front end, tokenizer and checkpoint converters."""
