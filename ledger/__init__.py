"""Rantai's pure core: canonical encoding, keys and signatures, events, blocks, the RFC 9162
Merkle log, C2SP checkpoints and the streaming chain verifier.

Nothing in this package does I/O, reads a clock, draws randomness or talks to a network or a
database; callers inject all of that. ``node`` and ``api`` build on it, never the reverse.
"""
