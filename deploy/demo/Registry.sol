// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark demo registry
/// @notice Emits events with rich parameter types (indexed dynamic values, arrays,
/// bytes, a struct) and bursts of many events in one transaction. Keeps no state
/// except the `Burst` sequence counter.
contract Registry {
    struct Info {
        address who;
        uint128 amount;
        bool active;
        string note;
    }

    /// Number of `Burst` events emitted so far; the next one carries this `seq`.
    uint256 public burstCount;

    event Registered(string indexed name, address indexed owner, uint256[] ids, string label);
    event Tagged(bytes32 indexed key, string[] tags, bytes data);
    event Updated(uint64 indexed id, Info info);
    event Burst(uint256 indexed seq, uint256 value);

    function register(string calldata name, uint256[] calldata ids, string calldata label) external {
        emit Registered(name, msg.sender, ids, label);
    }

    function tag(bytes32 key, string[] calldata tags, bytes calldata data) external {
        emit Tagged(key, tags, data);
    }

    function update(uint64 id, address who, uint128 amount, bool active, string calldata note) external {
        emit Updated(id, Info(who, amount, active, note));
    }

    /// @notice Emits `n` `Burst` events; `seq` counts across calls, `value` is the
    /// position within this call (0 .. n-1).
    function burst(uint256 n) external {
        uint256 seq = burstCount;
        for (uint256 i = 0; i < n; i++) {
            emit Burst(seq + i, i);
        }
        burstCount = seq + n;
    }
}
