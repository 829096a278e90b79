// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark benchmark load: ERC-721-style transfers
/// @notice Emits the ERC-721 `Transfer` event (the same topic0 as ERC-20's, with the
/// token id indexed: four topics, no data) without keeping owners. Not a token.
contract Collectible {
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    /// One `Transfer(from[i], to[i], tokenId[i])` per entry, in order.
    function transfers(address[] calldata from, address[] calldata to, uint256[] calldata tokenId) external {
        require(from.length == to.length && to.length == tokenId.length, "lengths differ");
        for (uint256 i = 0; i < from.length; i++) {
            emit Transfer(from[i], to[i], tokenId[i]);
        }
    }
}
