"""Benchmark harness for movietickets (`make bench`, i.e. `python -m bench`).

Starts the service as it ships (`movietickets serve`, uvicorn) on MariaDB and on SQLite, with the
Daraja simulator in its own process, drives it with wrk, and writes `bench/RESULTS.md`. See
`bench/README.md` for what each scenario measures and for the options.
"""
