// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark hostile payloads
/// @notice Emits what anyone can make a contract emit: strings holding NUL or bytes that
/// are not UTF-8 (Solidity's `string(bytes)` allows any bytes), inside tuples and arrays
/// too; very large logs; thousands of logs in one transaction; and logs whose layout does
/// not match the declared events (raw `log1`/`log3` with a declared event's topic0).
contract Payloads {
    struct Item {
        string label;
        bytes raw;
        string[] tags;
    }

    event Note(string text);
    event Wrapped(uint64 indexed id, Item item);
    event Big(bytes blob);
    event Tick(uint256 indexed i, uint256 value);

    /// One `Note` whose text is `b`, whatever its bytes.
    function note(bytes calldata b) external {
        emit Note(string(b));
    }

    /// One `Wrapped` whose label and first tag are `b`, whatever its bytes.
    function wrapped(uint64 id, bytes calldata b) external {
        string[] memory tags = new string[](2);
        tags[0] = string(b);
        tags[1] = "plain";
        emit Wrapped(id, Item(string(b), b, tags));
    }

    /// One `Big` carrying `n` bytes (`n` a multiple of 32): word `i` of the blob is
    /// `keccak256(abi.encode(i))`, so the content is known without sending it.
    function big(uint256 n) external {
        require(n % 32 == 0, "n must be a multiple of 32");
        bytes memory blob = new bytes(n);
        for (uint256 i = 0; i < n / 32; i++) {
            bytes32 w = keccak256(abi.encode(i));
            assembly {
                mstore(add(add(blob, 32), mul(i, 32)), w)
            }
        }
        emit Big(blob);
    }

    /// `n` `Tick` events in one transaction.
    function ticks(uint256 n) external {
        for (uint256 i = 0; i < n; i++) {
            emit Tick(i, n - i);
        }
    }

    /// A `Note` topic0 over 2 bytes of data (too short for a string), and a `Note` topic0
    /// with two extra topics: neither fits the declared `Note(string)`.
    function malformed() external {
        bytes32 topic = Note.selector;
        assembly {
            mstore(0, 0xbeef000000000000000000000000000000000000000000000000000000000000)
            log1(0, 2, topic)
            log3(0, 0, topic, 1, 2)
        }
    }
}
