"""gblend: a reproducible study of Gradient-Blending (Wang, Tran & Feiszli, CVPR 2020)."""

__version__ = "0.1.0"
