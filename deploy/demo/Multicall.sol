// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark benchmark load: several contracts in one transaction
/// @notice Calls each target with its calldata in turn, so that one transaction carries
/// the logs of several contracts (a trade: a payment, an item, an order). Reverts when any
/// call fails. Emits nothing itself.
contract Multicall {
    function aggregate(address[] calldata targets, bytes[] calldata data) external {
        require(targets.length == data.length, "lengths differ");
        for (uint256 i = 0; i < targets.length; i++) {
            (bool ok,) = targets[i].call(data[i]);
            require(ok, "call failed");
        }
    }
}
