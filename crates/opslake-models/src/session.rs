//! The one SQL session opslake answers with: `build` and `test` run models in it, `query` and
//! `serve` run users' statements in it. Same tables, same functions, wherever SQL is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Date32Array, Decimal128Array, StringArray};
use datafusion::prelude::SessionContext;
use opslake_lake::{Error as LakeError, Lake};
use opslake_schema::Contract;
use opslake_tools::fx::{FxRates, MissingRates, RATE_SCALE, fx_convert_udf};
use opslake_tools::udf::UdfContext;

use crate::Result;

/// A session over a lake, and what `fx_convert` found no rate for while its statements ran.
pub struct Session {
    /// The DataFusion session.
    pub ctx: SessionContext,
    /// Conversions without a rate, filled as queries run: their results are null.
    pub missing_rates: MissingRates,
}

/// Opens the session over `lake`:
/// - every canonical and system table by its SQL name (`crm.people`, `_rejects`), those no
///   file has fed yet empty, at the versions of `as_of` when given (`--as-of <run>`);
/// - every model table already built by its bare name, and the failing rows of tests as
///   `test_failures.<test>` (latest versions: model tables are rebuilt whole, not versioned
///   with runs, so an `as_of` session leaves them out);
/// - opslake's functions bound to `udf` (`normalize_email`, `parse_date`, `max_by`, ...), and
///   `fx_convert` over the rates of `ref.fx_rates`;
/// - `information_schema`, which BI tools browse and SQL users expect.
pub async fn open(
    lake: &Lake,
    contract: &Contract,
    udf: &UdfContext,
    as_of: Option<&BTreeMap<String, u64>>,
) -> Result<Session> {
    let ctx = opslake_lake::read::context();
    ctx.state_ref().write().config_mut().options_mut().catalog.information_schema = true;
    opslake_lake::read::register_lake(&ctx, lake, contract, as_of).await?;
    let missing_rates = register_fx(&ctx).await?;
    opslake_tools::udf::register(&ctx, udf);
    if as_of.is_none() {
        crate::execute::register_built(&ctx, lake).await?;
    }
    Ok(Session { ctx, missing_rates })
}

/// Registers `fx_convert(amount, from, to, date)` with `ctx`, over the rates of `ref.fx_rates`.
/// Conversions that find no rate are collected in the returned set, for the caller to report.
async fn register_fx(ctx: &SessionContext) -> Result<MissingRates> {
    let mut rates = FxRates::default();
    let sql = format!(
        "SELECT CAST(rate_date AS DATE), from_currency, to_currency, \
         CAST(rate AS DECIMAL(38, {RATE_SCALE})) FROM ref.fx_rates WHERE NOT is_deleted"
    );
    let df_err = |source| LakeError::DataFusion { context: "reading ref.fx_rates".into(), source };
    let batches = ctx.sql(&sql).await.map_err(df_err)?.collect().await.map_err(df_err)?;
    for b in &batches {
        let day = b.column(0).as_any().downcast_ref::<Date32Array>();
        let from = b.column(1).as_any().downcast_ref::<StringArray>();
        let to = b.column(2).as_any().downcast_ref::<StringArray>();
        let rate = b.column(3).as_any().downcast_ref::<Decimal128Array>();
        let (Some(day), Some(from), Some(to), Some(rate)) = (day, from, to, rate) else {
            return Err(LakeError::Internal { message: "ref.fx_rates has unexpected column types".into() }.into());
        };
        for i in 0..b.num_rows() {
            if !(day.is_null(i) || from.is_null(i) || to.is_null(i) || rate.is_null(i)) {
                rates.insert(day.value(i), from.value(i), to.value(i), rate.value(i));
            }
        }
    }
    let missing = MissingRates::default();
    ctx.register_udf(fx_convert_udf(Arc::new(rates), Arc::clone(&missing)));
    Ok(missing)
}
