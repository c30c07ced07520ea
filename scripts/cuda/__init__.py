"""The CUDA check (check_cuda.py) and its checks and pure helpers."""
