"""The leadership report and mart exports (plain Python, no Dagster).

data.report_data(con) reads every number from the warehouse into a plain dict (the sections'
reads are in forecast_sections, pipeline_sections and quality_sections); render turns it
into one self-contained HTML file (Jinja2, autoescaped; charts.py lays out the inline SVG);
summary gives the headline for the CLI and the Dagster UI; export writes a mart to CSV/XLSX with
formula-looking text neutralised; browser looks at a page in headless Chromium (tests, docs).
"""
