"""The tools that rank frameworks from paired rounds: ``bnbench compare`` (``compare``), a
framework's forms against its kept form (``tunelog``), and how cost grows with the work
(``scale``, fitted by ``fit``)."""
