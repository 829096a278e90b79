//! `GET /v1/contracts/{name}/addresses`: a contract's addresses, by page. For a factory
//! contract, the children its factory created (from the index, oldest first, with the
//! creating log); for a contract with static addresses, its configured addresses.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tidemark_db_client::{ChildPage, ChildQuery, DbClient};
use tidemark_shared_types::{ContractAddress, PublicConfig};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{Query, QueryParams};
use crate::response::cache_control;
use crate::state::AppState;

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/contracts/{name}/addresses", get(addresses))
}

/// `/v1/contracts/{name}/addresses` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AddressesParams {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// The page, from 1 (default 1).
    #[param(minimum = 1, default = 1)]
    pub page: Option<u64>,
    /// Addresses per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub size: Option<u64>,
}

impl QueryParams for AddressesParams {
    const FIELDS: &'static [&'static str] = &["chainId", "page", "size"];
}

/// `/v1/contracts/{name}/addresses` body: the shape of `/v1/epochs`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressesBody {
    /// The addresses of the page; empty past the last page.
    #[schema(value_type = Vec<tidemark_shared_types::ContractAddress>)]
    pub items: Vec<ContractAddress>,
    /// How many addresses match.
    pub total: u64,
    /// The page, from 1.
    pub page: u64,
    /// The page size.
    pub size: u64,
    /// How many pages there are: `ceil(total / size)`, 0 when nothing matches.
    pub pages: u64,
}

impl From<ChildPage> for AddressesBody {
    fn from(p: ChildPage) -> Self {
        Self { items: p.items, total: p.total, page: p.page, size: p.size, pages: p.pages }
    }
}

/// What the config says of contract `name` on the chains asked for.
enum Kind {
    /// A factory contract (on every chain asked for).
    Factory,
    /// Static addresses (on every chain asked for), by chain.
    Static(Vec<ContractAddress>),
}

fn kind(config: &PublicConfig, name: &str, chain_id: Option<u64>) -> Result<Kind, ApiError> {
    let defined: Vec<(u64, &tidemark_shared_types::PublicContractConfig)> = config
        .chains
        .iter()
        .filter(|c| chain_id.is_none_or(|id| id == c.chain_id))
        .flat_map(|c| c.contracts.iter().filter(|k| k.name == name).map(move |k| (c.chain_id, k)))
        .collect();
    if defined.is_empty() {
        return Err(ApiError::UnknownContract(name.to_owned()));
    }
    let factories = defined.iter().filter(|(_, k)| k.factory.is_some()).count();
    if factories == defined.len() {
        return Ok(Kind::Factory);
    }
    if factories > 0 {
        return Err(ApiError::invalid(
            "chainId",
            format!("{name:?} is a factory contract on some chains and static on others: give chainId"),
        ));
    }
    Ok(Kind::Static(
        defined
            .into_iter()
            .flat_map(|(chain_id, k)| {
                k.addresses.iter().map(move |a| ContractAddress {
                    chain_id,
                    contract: k.name.clone(),
                    address: a.clone(),
                    block_number: None,
                    block_hash: None,
                    log_index: None,
                    tx_hash: None,
                })
            })
            .collect(),
    ))
}

/// A contract's addresses. A factory contract's children come from the index, ordered by
/// chain, creating block and log index (a child indexed since then appears at its place
/// in that order); a static contract's addresses come from the config. `404
/// unknown_contract` when no chain asked for has a contract of that name.
#[utoipa::path(get, path = "/v1/contracts/{name}/addresses", tag = "contracts",
    params(("name" = String, Path, description = "The contract's name in the config"), AddressesParams),
    responses(
        (status = 200, description = "A page of addresses", body = AddressesBody),
        (status = 400, description = "Bad parameter", body = crate::error::ErrorBody),
        (status = 404, description = "No such contract", body = crate::error::ErrorBody),
        (status = 503, description = "No config cached, or the database is unavailable", body = crate::error::ErrorBody)))]
pub async fn addresses(
    State(db): State<DbClient>,
    Path(name): Path<String>,
    Query(params): Query<AddressesParams>,
) -> Result<Response, ApiError> {
    if let Some(c) = params.chain_id
        && i64::try_from(c).is_err()
    {
        return Err(ApiError::invalid("chainId", format!("must be at most {}", i64::MAX)));
    }
    let query = ChildQuery {
        contract: name.clone(),
        chain_id: params.chain_id,
        page: params.page.unwrap_or(1),
        size: params.size.unwrap_or(ChildQuery::DEFAULT_PAGE_SIZE),
    };
    query.validate()?;
    let config = db.public_config().map_err(|reason| ApiError::Unavailable { reasons: vec![reason] })?;
    let body = match kind(&config, &name, params.chain_id)? {
        Kind::Factory => AddressesBody::from(db.children(&query).await?),
        Kind::Static(all) => {
            let total = all.len() as u64;
            let skip = usize::try_from(query.page.saturating_sub(1).saturating_mul(query.size))
                .unwrap_or(usize::MAX);
            let items =
                all.into_iter().skip(skip).take(usize::try_from(query.size).unwrap_or(usize::MAX)).collect();
            AddressesBody::from(ChildPage::new(&query, items, total))
        }
    };
    Ok((cache_control("public, max-age=1"), Json(body)).into_response())
}
