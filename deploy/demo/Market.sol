// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Tidemark benchmark load: events with dynamic types
/// @notice Emits `Order` events carrying a string, a dynamic array and a tuple holding a
/// string, as given. Keeps no state.
contract Market {
    struct Terms {
        address taker;
        uint128 price;
        bool filled;
        string note;
    }

    struct Listing {
        uint256 id;
        address maker;
        string memo;
        uint256[] amounts;
        Terms terms;
    }

    event Order(uint256 indexed id, address indexed maker, string memo, uint256[] amounts, Terms terms);

    /// One `Order` per listing, in order.
    function orders(Listing[] calldata listings) external {
        for (uint256 i = 0; i < listings.length; i++) {
            Listing calldata l = listings[i];
            emit Order(l.id, l.maker, l.memo, l.amounts, l.terms);
        }
    }
}
