//! `GET /v1/epochs`: the instance's epochs (per-batch processing stages, DESIGN §8),
//! newest first, by page.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tidemark_db_client::{DbClient, EpochQuery};
use tidemark_shared_types::{EpochItem, EpochStage};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{Query, QueryParams};
use crate::response::cache_control;
use crate::state::AppState;

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/epochs", get(epochs))
}

/// `/v1/epochs` parameters. Filters are optional; they combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EpochsParams {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only epochs currently in this stage: `planned`, `fetched`, `decoded`, `stored`,
    /// `finalized` or `reorged`.
    #[param(value_type = Option<tidemark_shared_types::EpochStage>)]
    pub stage: Option<String>,
    /// The page, from 1 (default 1).
    #[param(minimum = 1, default = 1)]
    pub page: Option<u64>,
    /// Epochs per page, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100, default = 10)]
    pub size: Option<u64>,
}

impl QueryParams for EpochsParams {
    const FIELDS: &'static [&'static str] = &["chainId", "stage", "page", "size"];
}

impl EpochsParams {
    /// Validates the parameters into a db-client query.
    pub fn into_query(self) -> Result<EpochQuery, ApiError> {
        let chain_id = match self.chain_id {
            Some(c) if i64::try_from(c).is_err() => {
                return Err(ApiError::invalid("chainId", format!("must be at most {}", i64::MAX)));
            }
            other => other,
        };
        let stage = match self.stage {
            None => None,
            Some(s) => Some(EpochStage::parse(&s).ok_or_else(|| {
                let names: Vec<&str> = EpochStage::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::invalid("stage", format!("expected one of {}", names.join(", ")))
            })?),
        };
        let query = EpochQuery {
            chain_id,
            stage,
            page: self.page.unwrap_or(1),
            size: self.size.unwrap_or(EpochQuery::DEFAULT_PAGE_SIZE),
        };
        // Out-of-range pages and sizes are 400s naming the field (see `ApiError`).
        query.validate()?;
        Ok(query)
    }
}

/// `/v1/epochs` body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EpochsBody {
    /// The epochs of the page, newest first; empty past the last page.
    #[schema(value_type = Vec<tidemark_shared_types::EpochItem>)]
    pub items: Vec<EpochItem>,
    /// How many epochs match the filters.
    pub total: u64,
    /// The page, from 1.
    pub page: u64,
    /// The page size.
    pub size: u64,
    /// How many pages there are: `ceil(total / size)`, 0 when nothing matches.
    pub pages: u64,
}

/// Epochs newest first: by `epochId` descending, then `chainId` ascending (epoch ids
/// increase per chain; filter by `chainId` for one chain's timeline). Pages are offsets:
/// walking pages 1 to `pages` returns each epoch once while none is added meanwhile.
#[utoipa::path(get, path = "/v1/epochs", tag = "epochs", params(EpochsParams), responses(
    (status = 200, description = "A page of epochs", body = EpochsBody),
    (status = 400, description = "Bad parameter", body = crate::error::ErrorBody),
    (status = 503, description = "Database unavailable, or the query ran past the statement timeout", body = crate::error::ErrorBody)))]
pub async fn epochs(
    State(db): State<DbClient>,
    Query(params): Query<EpochsParams>,
) -> Result<Response, ApiError> {
    let query = params.into_query()?;
    let page = db.epochs(&query).await?;
    let body = EpochsBody {
        items: page.items,
        total: page.total,
        page: page.page,
        size: page.size,
        pages: page.pages,
    };
    Ok((cache_control("public, max-age=1"), Json(body)).into_response())
}
