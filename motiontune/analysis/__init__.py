"""Analyses of a backbone's internals (attention head types, ...)."""
