"""Voronka's plain libraries: ingest, alerts, report, quality, simulator, config, errors, warehouse
reads and the `voronka` command. No Dagster here (the CLI reaches orchestration/ lazily, only for
the commands that run the graph)."""
