"""Silero VAD v6 (snakers4/silero-vad, MIT): speech probability per 32 ms of 16-kHz audio, and speech regions.

`model.py` is the network's convolutional front end in MLX, `vad.py` the host side (the recurrent scan, the
front end in numpy for the CPU, the region algorithm), `family.py` the registry's entry point.
"""
