"""Custom Lava Processes (``process.py``) and their floating-point ProcessModels (``models.py``).

Kept in their own side-effect-free package: Lava's compiler imports every module in a Process's
directory (and its parent package) to discover ProcessModels.
"""
