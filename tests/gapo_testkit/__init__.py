"""Plain-torch helpers for the GAPO trainer tests and benchmarks (a tiny Wan-shaped video denoiser)."""
