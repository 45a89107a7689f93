"""densekit: train, encode, index, search, evaluate and mine hard negatives for dense retrievers."""

__version__ = "0.1.0"
