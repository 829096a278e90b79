// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./Pair.sol";

/// @title Tidemark demo pair factory
/// @notice Shaped like the UniswapV2 factory as far as logs go: `PairCreated(token0
/// indexed, token1 indexed, pair, count)` with the pair's address as a non-indexed
/// parameter, and `PairListed(pair indexed)` with it indexed. Batch functions create
/// many pairs, or trade on many, in one transaction, and `createAndSwap` has a new pair
/// emit events in its creation transaction, before and after `PairCreated`.
contract PairFactory {
    address[] public allPairs;

    event PairCreated(address indexed token0, address indexed token1, address pair, uint256);
    event PairListed(address indexed pair);

    function allPairsLength() external view returns (uint256) {
        return allPairs.length;
    }

    /// Creates the pair of `tokenA` and `tokenB` (sorted) at a CREATE2 address.
    function createPair(address tokenA, address tokenB) public returns (address pair) {
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        bytes32 salt = keccak256(abi.encodePacked(token0, token1, allPairs.length));
        pair = address(new Pair{salt: salt}());
        Pair(pair).initialize(token0, token1);
        allPairs.push(pair);
        emit PairCreated(token0, token1, pair, allPairs.length);
    }

    /// Creates `n` pairs of made-up tokens.
    function createPairs(uint256 n) external {
        for (uint256 i = 0; i < n; i++) {
            uint256 k = allPairs.length;
            createPair(address(uint160(k * 2 + 1)), address(uint160(k * 2 + 2)));
        }
    }

    /// Creates a pair whose first events come in its creation transaction: `Mint` and
    /// `Sync` before `PairCreated` is emitted, a `Swap` and `Sync` after.
    function createAndSwap(address tokenA, address tokenB) external returns (address pair) {
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        bytes32 salt = keccak256(abi.encodePacked(token0, token1, allPairs.length));
        pair = address(new Pair{salt: salt}());
        Pair(pair).initialize(token0, token1);
        Pair(pair).mint(1000, 1000);
        allPairs.push(pair);
        emit PairCreated(token0, token1, pair, allPairs.length);
        Pair(pair).swap(10, msg.sender);
    }

    /// Lists an existing address (a second way to discover the same child).
    function list(address pair) external {
        emit PairListed(pair);
    }

    /// Mints on every pair of `pairs`, then swaps `rounds` times on each.
    function trade(address[] calldata pairs, uint256 rounds) external {
        for (uint256 i = 0; i < pairs.length; i++) {
            Pair(pairs[i]).mint(1000, 1000);
            for (uint256 r = 0; r < rounds; r++) {
                Pair(pairs[i]).swap(uint112(10 + r), msg.sender);
            }
        }
    }
}
