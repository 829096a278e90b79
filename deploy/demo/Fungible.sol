// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark benchmark load: ERC-20-style transfers
/// @notice Emits the ERC-20 `Transfer` event without keeping balances, so that one
/// transaction can emit any number of transfers between any addresses cheaply (the
/// benchmark's realistic dataset). Not a token.
contract Fungible {
    event Transfer(address indexed from, address indexed to, uint256 value);

    /// One `Transfer(from[i], to[i], value[i])` per entry, in order.
    function transfers(address[] calldata from, address[] calldata to, uint256[] calldata value) external {
        require(from.length == to.length && to.length == value.length, "lengths differ");
        for (uint256 i = 0; i < from.length; i++) {
            emit Transfer(from[i], to[i], value[i]);
        }
    }
}
