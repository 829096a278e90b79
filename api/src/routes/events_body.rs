//! The `/v1/events` body written directly into a buffer: byte for byte what
//! `serde_json::to_writer` makes of [`EventsBody`](super::events::EventsBody), at a
//! fraction of the cost.
//!
//! serde_json checks every byte of every string against its escape table one at a time;
//! most of a page is hashes, addresses and names that need no escaping at all. Here each
//! string is checked in one pass the compiler vectorizes and copied whole, and only a
//! string that needs escaping goes through serde_json. `args` is the stored JSON text,
//! copied as it is (as serde_json does with a `RawValue`).

use serde_json::value::RawValue;
use tidemark_shared_types::{Cursor, EventItem};

/// Room kept for the end of the body: `],"nextCursor":"<cursor>"}`.
const TAIL_BYTES: usize = 48;

/// Appends the JSON of `{"items": items, "nextCursor": next_cursor}` to `out`, but stops
/// before the item that would take the body past `max_bytes` (the first item is always
/// written): the page then ends at the last item written, whose cursor becomes
/// `nextCursor`. Returns how many items were written and the `nextCursor` written.
pub(crate) fn write(
    out: &mut Vec<u8>,
    items: &[EventItem<Box<RawValue>>],
    next_cursor: Option<Cursor>,
    max_bytes: usize,
) -> serde_json::Result<(usize, Option<Cursor>)> {
    let start = out.len();
    let mut written = items.len();
    let mut next_cursor = next_cursor;
    let mut ints = itoa::Buffer::new();
    let mut number = |out: &mut Vec<u8>, key: &[u8], n: u64| {
        out.extend_from_slice(key);
        out.extend_from_slice(ints.format(n).as_bytes());
    };
    out.extend_from_slice(b"{\"items\":[");
    for (n, item) in items.iter().enumerate() {
        let before = out.len();
        if n > 0 {
            out.push(b',');
        }
        // Field order and names as EventItem's derived Serialize (camelCase); the cursor
        // is a decimal string.
        out.extend_from_slice(b"{\"cursor\":");
        cursor(out, item.cursor);
        number(out, b",\"chainId\":", item.chain_id);
        number(out, b",\"blockNumber\":", item.block_number);
        string(out, b",\"blockHash\":", &item.block_hash)?;
        number(out, b",\"blockTimestamp\":", item.block_timestamp);
        string(out, b",\"transactionHash\":", &item.transaction_hash)?;
        number(out, b",\"transactionIndex\":", item.transaction_index);
        number(out, b",\"logIndex\":", item.log_index);
        string(out, b",\"address\":", &item.address)?;
        string(out, b",\"contract\":", &item.contract)?;
        string(out, b",\"event\":", &item.event)?;
        string(out, b",\"signature\":", &item.signature)?;
        out.extend_from_slice(b",\"args\":");
        out.extend_from_slice(item.args.get().as_bytes());
        if let Some(e) = &item.decode_error {
            string(out, b",\"decodeError\":", e)?;
        }
        out.extend_from_slice(if item.finalized {
            b",\"finalized\":true}"
        } else {
            b",\"finalized\":false}"
        });
        if n > 0 && out.len() - start + TAIL_BYTES > max_bytes {
            out.truncate(before);
            written = n;
            next_cursor = Some(items[n - 1].cursor);
            break;
        }
    }
    out.extend_from_slice(b"],\"nextCursor\":");
    match next_cursor {
        Some(c) => cursor(out, c),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Ok((written, next_cursor))
}

/// A cursor as its decimal string.
fn cursor(out: &mut Vec<u8>, c: Cursor) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(c.0).as_bytes());
    out.push(b'"');
}

/// `key` then a JSON string: copied between quotes when nothing in it needs escaping (no
/// control character, `"` or `\`: serde_json's escape set), else escaped by serde_json.
fn string(out: &mut Vec<u8>, key: &[u8], s: &str) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    // A fold rather than `any`: no early exit, so the loop vectorizes.
    let escape = s.bytes().fold(false, |acc, b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escape {
        return serde_json::to_writer(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::routes::events::EventsBody;

    fn item() -> impl Strategy<Value = EventItem<Box<RawValue>>> {
        // Strings from any char (controls, quotes, backslashes, DEL, non-ASCII) and typical
        // hex; args as any JSON value serde_json writes.
        let text = prop_oneof![any::<String>(), "0x[0-9a-f]{0,64}", "[ -~]{0,20}"];
        let args = prop_oneof![
            Just(serde_json::json!({})),
            Just(serde_json::Value::Null),
            "0x[0-9a-f]{0,64}".prop_map(|h| serde_json::json!({"text": {"hex": h}})),
            any::<String>().prop_map(|s| serde_json::json!({"from": s, "value": "7"})),
            any::<i64>().prop_map(|n| serde_json::json!([n, null, true, {"a\"b": "c\\d\u{1}"}])),
        ];
        (
            (any::<i64>(), any::<u64>(), any::<u64>(), text.clone(), any::<u64>(), text.clone()),
            (any::<u64>(), any::<u64>(), text.clone(), text.clone(), text.clone(), text),
            (args, any::<bool>(), proptest::option::of(text_error())),
        )
            .prop_map(
                |(
                    (cursor, chain_id, block_number, block_hash, block_timestamp, tx),
                    rest,
                    (args, fin, error),
                )| {
                    let (transaction_index, log_index, address, contract, event, signature) = rest;
                    EventItem {
                        cursor: Cursor(cursor),
                        chain_id,
                        block_number,
                        block_hash,
                        block_timestamp,
                        transaction_hash: tx,
                        transaction_index,
                        log_index,
                        address,
                        contract,
                        event,
                        signature,
                        args: RawValue::from_string(args.to_string()).expect("serde_json output is JSON"),
                        decode_error: error,
                        finalized: fin,
                    }
                },
            )
    }

    /// Decode errors: any text, and the messages the indexer writes.
    fn text_error() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "data \\([0-9]+ bytes\\) does not decode as \\(string\\): [ -~]{0,40}"]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn writes_the_same_bytes_as_serde_json(
            items in proptest::collection::vec(item(), 0..6),
            next in proptest::option::of(any::<i64>()),
        ) {
            let next_cursor = next.map(Cursor);
            let mut ours = Vec::new();
            let (n, next) = write(&mut ours, &items, next_cursor, usize::MAX).expect("writes");
            prop_assert_eq!((n, next), (items.len(), next_cursor));
            let theirs = serde_json::to_vec(&EventsBody { items, next_cursor }).expect("serializes");
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }

        #[test]
        fn a_capped_page_ends_early_and_continues_from_its_last_item(
            items in proptest::collection::vec(item(), 1..8),
            max in 0usize..4000,
        ) {
            let mut ours = Vec::new();
            let (n, next) = write(&mut ours, &items, None, max).expect("writes");
            prop_assert!(n >= 1 && n <= items.len());
            let page = items[..n].to_vec();
            let want_next = if n < items.len() { Some(items[n - 1].cursor) } else { None };
            prop_assert_eq!(next, want_next);
            let theirs = serde_json::to_vec(&EventsBody { items: page, next_cursor: next }).expect("serializes");
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
            prop_assert!(n == 1 || ours.len() <= max, "{} bytes over the cap {max}", ours.len());
        }
    }
}
