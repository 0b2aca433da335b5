"""The power-function EMA's math (Karras et al. 2024), in plain PyTorch and NumPy: its closed forms and update rule
(power.py), and the post-hoc reconstruction of any EMA length from saved snapshots (posthoc.py)."""
