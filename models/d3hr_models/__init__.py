"""PyTorch models used to build the ONNX graphs that the D3HR Rust toolkit runs.

- :mod:`d3hr_models.dit`       -- class-conditional DiT (state-dict compatible with the official DiT).
- :mod:`d3hr_models.vae`       -- small KL-VAE for 1x32x32 images with a 4x8x8 latent.
- :mod:`d3hr_models.data`      -- Fashion-MNIST IDX reader and padding to 32x32.
- :mod:`d3hr_models.diffusion` -- DDPM schedule (linear beta) and deterministic DDIM steps.
"""
