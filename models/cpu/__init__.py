"""CPU kernels: numpy blocks over MLX weights (`ops`) and their optional C kernels (`kernels`), for the
float32 CPU backends of the families. GPUs never import this package's hot paths."""
