"""Models: train the win and time-to-close models (weekly), score every open deal (daily)."""

import math

import dagster as dg

from ml.features import DEAL_COLUMNS
from ml.registry import (
    TIME_TO_CLOSE,
    TTC_HEADLINE,
    WIN_HEADLINE,
    WIN_MODEL,
    ModelNotFoundError,
    ModelStore,
    headline_metrics,
    promote_if_not_worse,
)
from ml.scoring import (
    TRAINING_STEPS,
    baseline_models,
    score_open_deals,
    stage_duration_quantiles,
    train_models,
    used_features,
)
from orchestration.resources import WorkspaceResource
from voronka import progress
from voronka.warehouse_reads import (
    CANONICAL_FRAME_MODELS,
    canonical_frames,
    replace_table,
)

RAW = [dg.AssetKey(["raw", t]) for t in ("deals", "stage_events", "pipeline_stages")]
@dg.multi_asset(
    specs=[
        dg.AssetSpec(WIN_MODEL, group_name="models", deps=[*RAW, *CANONICAL_FRAME_MODELS],
                     owners=["team:data-science"],
                     description="P(won | state): gradient boosting + calibration, gated against "
                                 "the stage win-rate baseline."),
        dg.AssetSpec(TIME_TO_CLOSE, group_name="models", deps=[*RAW, *CANONICAL_FRAME_MODELS],
                     owners=["team:data-science"],
                     description="P(closes won within h days | state): cause-specific Cox by stage, "
                                 "gated against Aalen–Johansen by stage."),
    ],
    check_specs=[
        dg.AssetCheckSpec("model_quality_gate", asset=WIN_MODEL, blocking=True,
                          description="Promoted only if AUC and Brier are not worse than the baseline."),
        dg.AssetCheckSpec("model_quality_gate", asset=TIME_TO_CLOSE, blocking=True,
                          description="Promoted only if the concordance is not worse than the baseline."),
    ],
)
def trained_models(context: dg.AssetExecutionContext, workspace: WorkspaceResource):
    config = workspace.config()
    as_of = workspace.as_of_time()
    with workspace.connect() as con:
        frames = canonical_frames(con, as_of, deal_columns=DEAL_COLUMNS)
    # The note names the step running, so a long fit does not read as stuck on the one before.
    steps = [*TRAINING_STEPS, "trained"]
    with progress.task("model training", total=len(TRAINING_STEPS), note=steps[0]) as bar:
        def step_done(message: str) -> None:
            context.log.info(f"model training: {message}")
            bar.advance(note=steps[min(bar.count + 1, len(TRAINING_STEPS))])

        win_examples, ttc_examples, win, win_report, ttc, ttc_report = train_models(
            frames["deals"], frames["stage_events"], frames["pipeline_stages"], cutoff=as_of, seed=config.seed,
            progress=step_done)
    store = workspace.workspace.model_store()
    for name, artifact, report, keys, examples in (
            (WIN_MODEL, win, win_report, WIN_HEADLINE, win_examples),
            (TIME_TO_CLOSE, ttc, ttc_report, TTC_HEADLINE, ttc_examples)):
        promotion = promote_if_not_worse(store, name, artifact, report, examples=examples,
                                         features=used_features(artifact))
        if report.get("fallback"):  # short history: the stage baseline scores, the run goes on
            context.log.warning(f"{name}: {report['fallback']}")
        headline = headline_metrics(report, keys)
        left_out = report.get("features_left_out") or {}
        if left_out:
            context.log.warning(f"{name}: " + "; ".join(left_out.values()))
        importance = report.get("feature_importance") or []
        extra = ({"feature_importance": dg.MetadataValue.md(
            "| feature | drop in AUC when shuffled |\n|---|---|\n"
            + "\n".join(f"| {r['feature']} | {r['importance']:.4f} |" for r in importance))}
            if importance else {})
        notes = {k: v for k, v in (("fallback", report.get("fallback")),
                                   ("features_left_out", "; ".join(left_out.values())),
                                   ("crm_baseline", report.get("crm_source"))) if v}
        yield dg.MaterializeResult(asset_key=name, metadata={
            "version": promotion.version, "promoted": promotion.promoted, "in_use": promotion.in_use or "none",
            "store": str(store.root), "workspace_id": store.workspace_id, **headline, **notes, **extra})
        # Short history is no defect of a model (there is none to gate): the check passes with
        # the reason, the stage baseline scores and the run goes on; a refused model fails it.
        yield dg.AssetCheckResult(
            asset_key=name, check_name="model_quality_gate",
            passed=promotion.promoted or bool(report.get("fallback")),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"reason": promotion.reason or "not worse than the baseline",
                      "version_in_use": promotion.in_use or "none", **headline})


@dg.asset(group_name="models", deps=[WIN_MODEL, TIME_TO_CLOSE, "fct_stage_transitions", *CANONICAL_FRAME_MODELS],
          owners=["team:data-science"],
          description="Every open deal: p_win (and the stage baseline's), expected close date, "
                      "P(closing won this/next quarter), stalled flag and top drivers.")
def deal_scores(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    as_of = workspace.as_of_time()
    store = workspace.workspace.model_store()
    with workspace.connect() as con:
        frames = canonical_frames(con, as_of, deal_columns=DEAL_COLUMNS)
        try:
            win, win_card, win_in_use = _load_in_use(store, WIN_MODEL)
            ttc, ttc_card, ttc_in_use = _load_in_use(store, TIME_TO_CLOSE)
        except dg.Failure as err:
            # No model trained on this workspace (e.g. a shared models_dir holds only another
            # workspace's): the stage baselines of this workspace's own data score, said once.
            context.log.warning(f"deal scores: {err.description}; scoring with the stage baselines")
            win, ttc = baseline_models(frames["deals"], frames["stage_events"],
                                       frames["pipeline_stages"], as_of, seed=workspace.config().seed)
            win_card = ttc_card = {"version": err.description}
            win_in_use = ttc_in_use = False
        stays = con.execute("select pipeline, stage, days_in_stage, is_open from main.fct_stage_transitions "
                            "where stage_kind = 'open'").df()
        durations = stage_duration_quantiles(stays)
        scores = score_open_deals(win, ttc, frames["deals"], frames["stage_events"],
                                  frames["pipeline_stages"], as_of, durations, use_model=win_in_use)
        scores.insert(0, "as_of", as_of)
        replace_table(con, "main.deal_scores", scores)
        replace_table(con, "main.stage_durations", durations)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(scores),
        "win_model_version": win_card["version"] if win_in_use else "none in use: stage baseline",
        "time_to_close_version": ttc_card["version"] + ("" if ttc_in_use else " (not in use: stage baseline)"),
        "p_win_scored_by": _scored_by(win_card, win_in_use),
        "close_time_scored_by": _scored_by(ttc_card, ttc_in_use),
        "mean_p_win": float(scores["p_win"].mean()) if len(scores) else None,
        "stalled_deals": int(scores["is_stalled"].sum()),
        "open_pipeline_reporting": float(scores["amount_reporting"].fillna(0).sum()),
        "stage_durations_rows": len(durations),
    })


def _scored_by(card: dict, in_use: bool) -> str:
    """One line: the model version that scored, or why the stage baseline did."""
    if in_use:
        return f"model {card['version']}"
    return f"stage baseline ({(card.get('gate') or {}).get('reason') or card['version']})"


def _load_in_use(store: ModelStore, name: str):
    """(artifact, card, promoted): the promoted version of this workspace, else its newest stored
    one (whose win baseline still scores honestly); dg.Failure when nothing was ever trained on
    this workspace (versions of another workspace are never used: ml.registry)."""
    try:
        artifact, card = store.load(name)
        return artifact, card, True
    except ModelNotFoundError:
        versions = store.versions(name)
        if not versions:
            raise dg.Failure(f"{store.not_found_message(name)}: run `voronka run --retrain` "
                             "(or the weekly_retrain job) first") from None
        artifact, card = store.load(name, versions[-1])
        return artifact, card, False


BACKTEST = "forecast_backtest"


@dg.asset(name=BACKTEST, group_name="models", deps=[*RAW, *CANONICAL_FRAME_MODELS],
          owners=["team:data-science"],
          check_specs=[dg.AssetCheckSpec("model_beats_baselines", asset=BACKTEST,
                                         description="WARN when the model forecast's WAPE is not below "
                                                     "every baseline's at every horizon.")],
          description="Rolling-origin backtest of the revenue forecast (weekly): at each month start "
                      "the pipeline as it was, models trained on what was known then, every method's "
                      "forecast against what was booked. main.backtest_results; WAPE, bias, P10–P90 "
                      "coverage and pinball loss per method and horizon in the metadata.")
def forecast_backtest(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    from ml.backtest import METHODS, horizons_not_beaten, run_backtest

    config = workspace.config()
    as_of = workspace.as_of_time()
    with workspace.connect() as con:
        frames = canonical_frames(con, as_of, deal_columns=DEAL_COLUMNS)
    # run_backtest reports each origin done as "origin 2025-01-01 (3/23)": the bar takes its
    # count and total from there.
    with progress.task("forecast backtest", note="first origin") as bar:
        def origin_done(message: str) -> None:
            context.log.info(message)
            bar.message(message)

        backtest = run_backtest(frames["deals"], frames["stage_events"], frames["pipeline_stages"],
                                max_origins=config.backtest_max_origins, draws=config.backtest_draws,
                                seed=config.seed, correlation=config.forecast_deal_correlation, data_end=as_of,
                                progress=origin_done)
        bar.update(bar.total)  # an origin without a complete period yet is skipped unreported
    results = backtest.results.copy()
    results.insert(0, "as_of", as_of)
    with workspace.connect() as con:
        replace_table(con, "main.backtest_results", results)
    metrics = backtest.metrics
    model = metrics[metrics["method"] == "model"].set_index("horizon")["wape"].dropna()
    losing = horizons_not_beaten(metrics)
    table = ("| method | horizon | wape (P50) | wape (mean) | bias | coverage | pinball | origins |\n"
             "|---|---|---|---|---|---|---|---|\n"
             + "\n".join(f"| {r.method} | {r.horizon} | {_number(r.wape, '.3f')} | {_number(r.wape_mean, '.3f')} "
                         f"| {_number(r.bias, '+.3f')} | {_number(r.interval_coverage, '.0%')} "
                         f"| {_number(r.pinball_loss, '.3f')} | {r.n_origins} |"
                         for r in metrics.itertuples()))
    headline = {f"model_wape_{h.replace('+', '_')}": round(float(v), 4) for h, v in model.items()}
    return dg.MaterializeResult(
        metadata={"dagster/row_count": len(results), "origins": len(backtest.origins),
                  "methods": ", ".join(METHODS), **backtest.info, **headline,
                  "metrics": dg.MetadataValue.md(table)},
        check_results=[dg.AssetCheckResult(
            check_name="model_beats_baselines", passed=not losing and len(model) > 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"horizons_not_beaten": ", ".join(losing) if losing else "none",
                      "horizons_scored": len(model), "metrics": dg.MetadataValue.md(table)})])


def _number(value: float, spec: str) -> str:
    """A metric for the metadata table; '–' where it is undefined (NaN)."""
    return "–" if math.isnan(value) else format(value, spec)
