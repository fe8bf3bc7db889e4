"""The frozen text-to-audio diffusion model and the reference spectrograms it generates."""
