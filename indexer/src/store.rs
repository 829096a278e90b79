//! The indexer's side of the instance's single writer (DESIGN §3 "One writer per
//! instance"). The [`Writer`] — the connection holding the instance's advisory lock, which
//! runs every write of the instance — and its statements belong to
//! `tidemark_db_client::writer`; the pipeline's block headers enter its window as they are.

use tidemark_db_client::writer::WindowHeader;
pub use tidemark_db_client::writer::{Batch, Writer};
use tidemark_shared_types::BlockRef;

use crate::rpc::Header;

impl WindowHeader for Header {
    fn block(&self) -> &BlockRef {
        &self.block
    }

    fn parent_hash(&self) -> &str {
        &self.parent_hash
    }
}
