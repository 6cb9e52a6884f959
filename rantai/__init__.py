"""Rantai: a permissioned, verifiable supply-chain ledger for cooperatives."""


def main() -> None:
    """The ``rantai`` console script: :func:`rantai.cli.main`, imported when it runs.

    A process that :mod:`multiprocessing` spawns from the console script (a node's catch-up
    verifier) imports the script's module again; importing the command line (FastAPI,
    SQLAlchemy, the API) at the top of it would cost that process half a second for nothing.
    """
    from rantai.cli import main as run

    run()
