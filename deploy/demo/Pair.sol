// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark demo pair
/// @notice Shaped like a UniswapV2 pair as far as logs go: created by `PairFactory` with
/// CREATE2, initialized with its two tokens, then `Mint`, `Swap` and `Sync` events. It
/// moves no tokens: reserves are plain numbers, so traffic is cheap to generate.
contract Pair {
    address public factory;
    address public token0;
    address public token1;
    uint112 private reserve0;
    uint112 private reserve1;

    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Swap(
        address indexed sender,
        uint256 amount0In,
        uint256 amount1In,
        uint256 amount0Out,
        uint256 amount1Out,
        address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    constructor() {
        factory = msg.sender;
    }

    /// Called once by the factory, in the transaction that creates the pair.
    function initialize(address _token0, address _token1) external {
        require(msg.sender == factory, "FORBIDDEN");
        token0 = _token0;
        token1 = _token1;
    }

    /// Adds liquidity: `Mint` then `Sync`.
    function mint(uint112 amount0, uint112 amount1) external {
        reserve0 += amount0;
        reserve1 += amount1;
        emit Mint(msg.sender, amount0, amount1);
        emit Sync(reserve0, reserve1);
    }

    /// A swap of `amount0In` of token0 for token1 at a fixed price: `Swap` then `Sync`.
    function swap(uint112 amount0In, address to) external {
        uint112 out = amount0In / 2;
        if (out > reserve1) out = reserve1;
        reserve0 += amount0In;
        reserve1 -= out;
        emit Swap(msg.sender, amount0In, 0, 0, out, to);
        emit Sync(reserve0, reserve1);
    }
}
