"""motiontune: customized video generation on pretrained text-to-video diffusion models."""

__version__ = "0.1.0"
