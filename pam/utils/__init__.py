"""The bottom layer: helpers every other part of ``pam`` may use (no ``pam`` imports here)."""
