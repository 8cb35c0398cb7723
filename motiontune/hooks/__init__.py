"""Hooks around the denoiser: conditioning edits, forward contexts, block taps and temporal positions.

Every denoiser call of motiontune (training, validation, sampling, the probe's inversion) goes
through :func:`motiontune.hooks.call.denoiser_call`, which applies the recipe's ``condition``
edit and enters its ``forward_context`` around the call.
"""
