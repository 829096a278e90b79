//! Filter shapes of an events query, and the rule that admits only those an index serves.
//!
//! An events page is `WHERE cursor > $after AND <filters> ORDER BY cursor LIMIT n`. It is
//! cheap when an index yields the matching rows in cursor order (an index `(f, cursor)`
//! with `f` fixed by the filter) or yields few rows to sort (a transaction hash, a topic,
//! a bounded block range of one chain). Without one, PostgreSQL walks the primary key and
//! discards every row that does not match: the whole table when the matches are few or
//! late in cursor order (measured at 10 M rows: 1.5–10 M rows discarded, 1.8–5.5 s per
//! page; bench/RESULTS.md, "Filter shapes at 10 M rows").
//!
//! The indexes of layout 4 (`tidemark.ensure_instance_schema_v4`) and what serves each
//! accepted shape:
//! - `(chain_id, cursor)`, `(contract_id, cursor)`, `(event_id, cursor)` (a contract's
//!   event name, overloads included), `(address, cursor)`, `(topic{k}, cursor)`: one of
//!   these filters fixed, rows come in cursor order and the walk stops at the page's end
//!   or the value's last row;
//! - `(tx_hash)`: a transaction's few rows, sorted;
//! - `(chain_id, block_number)`: `chainId` with both `fromBlock` and `toBlock`, the
//!   range's rows, sorted.
//!
//! `event` is keyed per contract (`event_id`), and a block range per
//! chain; an open range (`fromBlock` alone, `toBlock` alone) would be served by the
//! primary key walking past every row outside it. The rule therefore asks for the
//! companion parameter, in this order: `contract` for `event`, `chainId` for a range, then
//! the missing bound. A transaction hash or a topic is selective enough to serve any
//! shape it is part of.

use std::fmt;

use super::EventQuery;

/// One filter of an [`EventQuery`], named as the API spells its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    /// `chainId`.
    ChainId,
    /// `contract`.
    Contract,
    /// `event`.
    Event,
    /// `address`.
    Address,
    /// `txHash`.
    TxHash,
    /// `topic1`.
    Topic1,
    /// `topic2`.
    Topic2,
    /// `topic3`.
    Topic3,
    /// `fromBlock`.
    FromBlock,
    /// `toBlock`.
    ToBlock,
}

impl Filter {
    /// Every filter, in the order of the statement's conditions.
    pub const ALL: [Filter; 10] = [
        Filter::ChainId,
        Filter::Contract,
        Filter::Event,
        Filter::Address,
        Filter::TxHash,
        Filter::Topic1,
        Filter::Topic2,
        Filter::Topic3,
        Filter::FromBlock,
        Filter::ToBlock,
    ];

    /// The API's query parameter.
    pub fn param(self) -> &'static str {
        match self {
            Filter::ChainId => "chainId",
            Filter::Contract => "contract",
            Filter::Event => "event",
            Filter::Address => "address",
            Filter::TxHash => "txHash",
            Filter::Topic1 => "topic1",
            Filter::Topic2 => "topic2",
            Filter::Topic3 => "topic3",
            Filter::FromBlock => "fromBlock",
            Filter::ToBlock => "toBlock",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The set of filters a query sets (`after` and `limit` are not filters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Shape(u16);

/// Why a shape is refused: the parameter it lacks and a message naming the alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The missing companion parameter, as the API spells it.
    pub field: &'static str,
    /// What to add.
    pub message: &'static str,
}

impl Shape {
    /// The shape of `query`.
    pub fn of(query: &EventQuery) -> Self {
        let EventQuery {
            chain_id,
            contract,
            event,
            address,
            tx_hash,
            topic1,
            topic2,
            topic3,
            from_block,
            to_block,
            after: _,
            limit: _,
            order: _,
        } = query;
        let set = [
            chain_id.is_some(),
            contract.is_some(),
            event.is_some(),
            address.is_some(),
            tx_hash.is_some(),
            topic1.is_some(),
            topic2.is_some(),
            topic3.is_some(),
            from_block.is_some(),
            to_block.is_some(),
        ];
        Filter::ALL.iter().zip(set).filter(|(_, s)| *s).fold(Self::default(), |shape, (f, _)| shape.with(*f))
    }

    /// Every shape, from no filter to all ten.
    pub fn all() -> impl Iterator<Item = Shape> {
        (0..1u16 << Filter::ALL.len()).map(Shape)
    }

    /// This shape with `filter` added.
    pub fn with(self, filter: Filter) -> Self {
        Self(self.0 | filter.bit())
    }

    /// True when `filter` is part of this shape.
    pub fn has(self, filter: Filter) -> bool {
        self.0 & filter.bit() != 0
    }

    /// The filters of this shape, in [`Filter::ALL`] order.
    pub fn filters(self) -> impl Iterator<Item = Filter> {
        Filter::ALL.into_iter().filter(move |f| self.has(*f))
    }

    /// True when no filter is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The rule (see the module's documentation): `Ok` when an index serves this shape,
    /// else the missing companion parameter.
    pub fn check(self) -> Result<(), Missing> {
        let selective =
            [Filter::TxHash, Filter::Topic1, Filter::Topic2, Filter::Topic3].into_iter().any(|f| self.has(f));
        if selective {
            return Ok(());
        }
        if self.has(Filter::Event) && !self.has(Filter::Contract) {
            return Err(Missing {
                field: "contract",
                message: "event needs contract (events are indexed per contract), or a txHash or topic1..3",
            });
        }
        let (from, to) = (self.has(Filter::FromBlock), self.has(Filter::ToBlock));
        if (from || to) && !self.has(Filter::ChainId) {
            return Err(Missing {
                field: "chainId",
                message: "fromBlock and toBlock need chainId (block ranges are indexed per chain), or a txHash \
                          or topic1..3",
            });
        }
        if from && !to {
            return Err(Missing {
                field: "toBlock",
                message: "fromBlock needs toBlock: a block range is served with both bounds (to follow new \
                          events, page with after=nextCursor instead)",
            });
        }
        if to && !from {
            return Err(Missing {
                field: "fromBlock",
                message: "toBlock needs fromBlock: a block range is served with both bounds",
            });
        }
        Ok(())
    }
}

impl fmt::Display for Shape {
    /// `chainId + event + fromBlock`, or `(no filter)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(no filter)");
        }
        let names: Vec<&str> = self.filters().map(Filter::param).collect();
        f.write_str(&names.join(" + "))
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(filters: &[Filter]) -> Shape {
        filters.iter().fold(Shape::default(), |s, f| s.with(*f))
    }

    fn field(filters: &[Filter]) -> Option<&'static str> {
        shape(filters).check().err().map(|m| m.field)
    }

    #[test]
    fn the_shapes_measured_poor_at_10m_rows_are_refused() {
        use Filter::*;
        // The 19 shapes bench/results/plans-10m.md flags, with the parameter each needs.
        let poor: [(&[Filter], &str); 19] = [
            (&[ChainId, Contract, Address, FromBlock], "toBlock"),
            (&[Contract, Address, FromBlock], "chainId"),
            (&[ChainId, FromBlock], "toBlock"),
            (&[ChainId, Event, ToBlock], "contract"),
            (&[ChainId, Address, FromBlock], "toBlock"),
            (&[Address, FromBlock], "chainId"),
            (&[ChainId, Contract, FromBlock], "toBlock"),
            (&[ChainId, Event], "contract"),
            (&[Contract, FromBlock, ToBlock], "chainId"),
            (&[ChainId, Event, Address], "contract"),
            (&[ChainId, Event, FromBlock], "contract"),
            (&[Event, Address, ToBlock], "contract"),
            (&[Event, Address, FromBlock], "contract"),
            (&[ChainId, Event, Address, FromBlock], "contract"),
            (&[ChainId, Event, Address, ToBlock], "contract"),
            (&[Event, Address], "contract"),
            (&[Contract, Address, FromBlock, ToBlock], "chainId"),
            (&[Address, FromBlock, ToBlock], "chainId"),
            (&[Event, Address, FromBlock, ToBlock], "contract"),
        ];
        for (filters, want) in poor {
            assert_eq!(field(filters), Some(want), "{}", shape(filters));
        }
    }

    #[test]
    fn served_shapes_pass_and_every_refusal_is_cured_by_its_parameter() {
        use Filter::*;
        for ok in [
            &[][..],
            &[ChainId],
            &[Contract],
            &[Contract, Event],
            &[Address],
            &[ChainId, FromBlock, ToBlock],
            &[ChainId, Contract, Event, Address, FromBlock, ToBlock],
            &[Event, Topic2],
            &[FromBlock, TxHash],
        ] {
            assert_eq!(shape(ok).check(), Ok(()), "{}", shape(ok));
        }
        // Adding the named parameters one after another always ends in an accepted shape.
        for s in Shape::all() {
            let mut s = s;
            for _ in 0..Filter::ALL.len() {
                let Err(missing) = s.check() else { break };
                let f = Filter::ALL.into_iter().find(|f| f.param() == missing.field).expect("a filter");
                assert!(!s.has(f), "{s} refused for {f:?}, which it has");
                s = s.with(f);
            }
            assert_eq!(s.check(), Ok(()), "{s}");
        }
        assert_eq!(Shape::all().count(), 1024);
        assert_eq!(shape(&[ChainId, Event, FromBlock]).to_string(), "chainId + event + fromBlock");
    }
}
