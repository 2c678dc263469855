"""Names the forecast, the backtest and the report share, in a module that imports nothing."""

ALL = "all"  # the scope of every pipeline together
MODEL, WEIGHTED_PIPELINE = "model", "weighted_pipeline"  # forecast methods
