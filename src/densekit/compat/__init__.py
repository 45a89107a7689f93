"""What lets a peer's user switch to densekit, in one place.

- :mod:`densekit.compat.flags`: the peers' flag table (Tevatron v1/v2, FlagEmbedding incl.
  ``hn_mine.py``, PaddleNLP, Trove, transformers 4), their defaults and the notices; the only
  source of the flag mapping, and of the README table.
- :mod:`densekit.compat.apply`: puts the table's flags on each command's parser and maps the
  given ones onto densekit's settings (train, encode, search, mine).
- :mod:`densekit.compat.tevatron_pickle`: Tevatron's pickled embeddings, read without running
  them (``densekit search`` and ``densekit convert``).
- :mod:`densekit.compat.trove`: Trove's module paths (``trove`` -> ``densekit.compat.trove`` in
  any import line; the top-level names are ``densekit``'s too).

The commands (and the argument layer they share, :mod:`densekit.arguments`) use this package;
modules below them reach it only through the table (:mod:`densekit.compat.flags`). Tevatron v1's
pooler files are a model-folder kind (:mod:`densekit.modeling.folders.tevatron_v1`).
"""
