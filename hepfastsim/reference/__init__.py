"""The reference chain ("full simulation" stand-in): Pythia 8, pileup, a CMS-like
detector with particle flow, fastjet jets, jet energy corrections, NanoAOD output.

Entry points: :func:`hepfastsim.reference.chain.run_block` (one block of events),
:func:`hepfastsim.reference.generate.generate` (a whole file), and the CLI
``hepfastsim generate``. Every number lives in :mod:`hepfastsim.reference.config`.
"""
