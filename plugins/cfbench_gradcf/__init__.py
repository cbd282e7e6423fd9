"""Plumbing the gradient CF plugins (Wachter, ROAR, REVISE) share; not a plugin itself.

``space``: the classifier's encoded space as a search sees it (masks, MAD scales, turning a
relaxed row back into a valid feature row).  ``torchenv``: seeded, single-threaded torch.
Nothing here imports torch at module import.
"""
