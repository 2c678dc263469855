"""One writer per CRM (mirroring voronka/ingest/readers/); `voronka.simulator.native_writers` dispatches."""
